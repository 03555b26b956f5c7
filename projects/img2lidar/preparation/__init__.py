"""Data and weight preparation shared by the command-line tools and the tests: info files
(nuScenes, PandaSet), superpixels, teacher checkpoints, text embeddings."""
