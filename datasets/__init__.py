"""XenoBench data layer: cube formats, manifests, label mappings, splits and the simulator.

Pure Python (no Django); see docs/datasets.md. Import the submodules directly
(``from datasets.cube_io import read_cube``) so importing the package stays cheap.
"""
