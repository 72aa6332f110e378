"""Features files: bring-your-own activations (write/read, role pooling, analysis of an upload).

Takes: pooled states you extracted yourself, or a features file.
Gives: FeatureSets ready for the pipeline, and their analysis.
"""
