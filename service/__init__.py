"""The HTTP service: a trained model behind FastAPI and uvicorn, with a page to try it (``python -m service``).

``app`` (the routes, their typed models, admission, the command line),
``connections`` (body and header deadlines, the connection cap, the request
log), ``batching`` (micro-batching of concurrent requests), ``occlusion``
(the explanation heat map), ``static/`` (the page). It uses training's public
surface alone, ``training.classifier`` (load a model, its input contract,
batch predict), so the service can change without touching training.
"""
