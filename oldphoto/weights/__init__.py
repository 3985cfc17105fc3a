"""Model weights, from a card to a loaded network; each file is one step of the flow.

``cards/`` (what each model is, its published files, where to fetch it) -> ``sources.py``
(which repositories, in what order) -> ``hubclient.py`` (talk to the Hub) and ``download.py``
(fetch a model from its sources, verify, convert) or ``importer.py`` (published ``.pth`` ->
ours) -> ``checkpoint.py`` (our format) -> ``cache.py`` (what is cached, and the trust record)
-> ``resolve.py`` (``--weights DIR``, then the cache, then the sources) -> ``load.py`` (the
built network bundle). ``choice.py`` decides between the published weights and the ``lite``
model bundled in ``lite/`` (``--model auto|published|lite``).
"""
