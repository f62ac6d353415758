"""`python -m src` points to the commands."""

print("commands: python -m src.fit | src.simulate | src.infer | src.report  (each has --help)")
