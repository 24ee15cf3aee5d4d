"""A Django project for the WSGI tests: SQLite, the admin, a CSRF-protected form, static files.

Run as ``--app tests.integration.django_site.wsgi:application`` with
``DJANGO_SETTINGS_MODULE=tests.integration.django_site.settings`` and
``REACTOR_DJANGO_DB`` naming the SQLite file.
"""
