"""Pretrained convolutional trunks for the SPP classifier (``training.model``), in Keras 3.

``efficientnet_lite``: EfficientNet-Lite0 and its ImageNet weights; ``torch_legacy``:
the restricted reader of the ``.pth`` file they ship in; ``imagenet``: how a
picture is shown to the trunk when checking it as an ImageNet classifier.
"""
