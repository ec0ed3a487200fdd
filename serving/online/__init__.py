"""The online service: BentoML ``POST /score`` for the storefront.

:mod:`serving.online.service` (the BentoML service), :mod:`serving.online.schema` (request and
answer), :mod:`serving.online.startup` (loading and process supervision),
:mod:`serving.online.answers` (lookups and inline histories), :mod:`serving.online.reload`,
:mod:`serving.online.batching`, :mod:`serving.online.guard` (HTTP edge),
:mod:`serving.online.home_page` and :mod:`serving.online.settings` (every environment variable).
"""
