"""Data and weight preparation shared by the command-line tools and the tests: info files,
superpixels, teacher checkpoints, text embeddings."""
