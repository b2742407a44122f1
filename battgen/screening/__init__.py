"""From a property request to ranked real candidate materials (the Screening page and ``battgen screen``).

The screening pipeline (``battgen.models.screening``) stops at generated latents, descriptor
images and predicted compositions; this package turns those into materials a scientist can act
on: requests with sensible defaults (:mod:`.request`), retrieval and ranking of dataset
materials (:mod:`.candidates`) and the command line (:mod:`.commands`).
"""
