"""The support set: the user's few labelled samples the Fisher probe and `ttplan train` read.

`base` (what every support set is, and the helpers its sources share), `sources` (open or load
one: a folder of images, an .npz, synthetic images; augmentation), `npz` (an .npz read without
trusting it), `sequences` (non-image inputs: sequences, audio features, token ids).
"""
