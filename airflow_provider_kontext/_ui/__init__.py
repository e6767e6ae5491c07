"""The "Kontext images" view in the Airflow UI (Airflow 3.1+): a plugin, its FastAPI app, and what they show.

* :mod:`.plugin` registers the app and the external views; importing it is cheap and safe on any
  Airflow 3 (below 3.1 the plugin is empty, because external views and HITL need 3.1).
* :mod:`.items` turns what a task instance left in XCom into the images to show, and decides
  where each image may come from: pure, no I/O.
* :mod:`.store` reads those XComs from the metadata DB inside the api-server.
* :mod:`.files` reads a stored copy, refusing anything that is not an image in storage.
* :mod:`.render` writes the server-side HTML; :mod:`.app` wires it all into FastAPI routes.
"""
