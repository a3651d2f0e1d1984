"""Device profiles, transports (local, SSH) and the single-file runner that executes on a board.

This stage has no code yet; see the README's status section.
"""
