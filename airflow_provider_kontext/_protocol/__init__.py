"""kie protocol knowledge, without I/O (the sans-I/O core), for both of kie's task APIs.

Flux Kontext's own endpoints and the Market jobs API share everything but their words: one
endpoint list and answer reader (:mod:`.envelope`), one task record and status (:mod:`.record`),
one set of retry rules (:mod:`.retry`) and one poll decision (:mod:`.polling`). What differs
has its own place: the Kontext request model and validation (:mod:`.request`), the Market model
catalog (:mod:`.catalog`), and one parser per family for the record. Connection settings are
in :mod:`.settings`. The sync hook and the async client are thin transports around it;
operators, sensors and triggers hold none of it.
"""
