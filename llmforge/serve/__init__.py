"""`llmforge serve` and `llmforge review`: checkpoints behind an OpenAI-compatible HTTP API, a chat playground,
and review pages where people label preference pairs and rate samples.

Why not `transformers serve`: it loads models by its own rules (no llmforge LoRA adapters with their recorded
base, no chat-template end-of-turn ids, no steering), has no API key, no request-size or queue limits, and
would still need these pages. FastAPI + uvicorn give the HTTP side (routing, validation, SSE streaming via
`StreamingResponse`); generation is the shared layer `llmforge.generation` that `generate`/`chat` use, so a
served reply equals `llmforge generate` with the same settings.

Layout:
  limits.py         what a client may ask for (torch-free)
  netcheck.py       host/port/API-key checks done before any model loads (torch-free)
  models.py         the loaded checkpoints and the bounded pool of generation slots
  openai_schema.py  request bodies (pydantic) → SamplingSettings, with the clamping reported
  openai_routes.py  /v1/chat/completions, /v1/completions, /v1/models, /health
  errors.py         OpenAI-style JSON error bodies for every failure
  app.py            the FastAPI app: auth and body-size middleware, routers, static pages
  review/           the review store (SQLite), its inputs, routes and agreement statistics
  static/           the playground and review pages (plain HTML + JS, no build step)
"""
