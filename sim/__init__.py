"""The simulation: installed and imported as ``equimanip.sim`` (see setup.py), never as ``sim``."""
if __name__ != "equimanip.sim":
    # `import sim` from the repository root would load a second copy of every module, with its own
    # classes and constants, beside the equimanip.sim ones the rest of the package uses.
    raise ImportError(f"the simulation is the package equimanip.sim; import that instead of '{__name__}'")
