"""The test project's URLs: the admin and one form."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("greet/", views.greet),
]
