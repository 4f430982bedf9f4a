"""paysim's engine boundary (ports), lock services, and the engines under test.

Nothing here imports `simulator`: the simulator drives engines only through these ports.
"""
