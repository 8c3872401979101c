"""Deployment of the trained generator: TorchScript / .pt2 export, the C++ example, `cxr-sr upscale`.

The exported-model contract is docs/contracts.md §4; everything here imports lazily so that
`import export` stays cheap.
"""
