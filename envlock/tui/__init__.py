"""The Textual app: a view over envlock's library (envref, diff, history), no logic of its own.

Import :mod:`envlock.tui.app` only where Textual is wanted; ``envlock.tui.data`` is the
one module through which the screens reach the library.
"""
