"""Streamlit building blocks shared by several pages (the pages themselves stay thin)."""
