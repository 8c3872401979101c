"""Data preparation for cxr-sr: Kaggle download, synthetic phantoms, verified WebDataset shards.

Modules (each with one job): `download` (Kaggle zip, resumable), `synth` + `phantom` (synthetic
set in the Kaggle layout), `sources` + `catalog` + `metadata` + `split` (what to shard and where
each patient goes), `shard` + `shard_writer` + `manifest` (writing the set), `verify`, and
`image_io` + `dicom_io` + `png_check` (decoding any radiograph to 8-bit gray). `cli` holds the
`cxr-sr prep` subcommands.
"""
