"""Raw-data loaders, post-load transforms, and the reconstruction output format."""
