"""Writing the image: the laptop's identity and disk, the site cache, the stream, the installers."""
