"""The atom regressor's switches, torch-free so that the training options (``--help``) can offer them."""

# pooling before the dense head: a 4x4 map flattened (position kept) or the mean over the map.
POOLINGS = ("flatten", "global")
# output: 112 softplus counts, or softmax element fractions times a softplus total count.
OUTPUTS = ("counts", "fractions")
# training-time augmentation of the latent maps (battgen.train.latent_augment).
AUGMENTATIONS = ("none", "shift", "shift-dihedral")
