"""Images: build an in-memory description (layers + config), then write it to sinks.

``layer`` writes deterministic tars, ``model`` holds the pure types and JSON,
``venv`` turns verified wheels into layers, ``base`` brings base images into the
store, ``build`` assembles, ``oci`` writes layouts and docker-archives,
``registry`` speaks the distribution API.
"""
