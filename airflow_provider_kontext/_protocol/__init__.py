"""kie protocol knowledge, without I/O (the sans-I/O core).

Request model and validation (:mod:`.request`), endpoints and answer parsing
(:mod:`.envelope`), the task record and its status (:mod:`.record`), retry rules
(:mod:`.retry`), the poll decision (:mod:`.polling`) and connection settings
(:mod:`.settings`). The sync hook and the async client are thin transports around it;
operators, sensors and triggers hold none of it.
"""
