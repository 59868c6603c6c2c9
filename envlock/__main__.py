from envlock.cli import entry

# Guarded: worker processes (multiprocessing "spawn") import the parent's __main__.
if __name__ == "__main__":
    entry()
