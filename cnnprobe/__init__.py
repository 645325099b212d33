"""cnnprobe: can a convolutional network learn distance, area, position and count?"""

__version__ = "0.1.0"
