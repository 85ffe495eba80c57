"""The model server (:mod:`.server`) and its prediction log (:mod:`.predlog`).

This package is what goes into the model-server image: it imports nothing else of ``mlcicd``
(a test checks it), so the image copies the package and needs no other project code.
Run it with ``python -m mlcicd.serving --model-dir DIR --port 5100``.
"""
