"""The WSGI callable: Django, with its static files handler, under wsgiref's validator."""

from __future__ import annotations

import os
from wsgiref.validate import validator

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.integration.django_site.settings")

from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.wsgi import get_wsgi_application

application = validator(StaticFilesHandler(get_wsgi_application()))
