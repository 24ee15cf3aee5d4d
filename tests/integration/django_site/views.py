"""A form that posts back to itself, guarded by Django's CSRF middleware."""

from __future__ import annotations

from django import forms
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token


class GreetForm(forms.Form):
    name = forms.CharField(max_length=40)


def greet(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = GreetForm(request.POST)
        if form.is_valid():
            return HttpResponse(f"Hello, {form.cleaned_data['name']}!", content_type="text/plain")
        return HttpResponse("bad form", status=400, content_type="text/plain")
    token = get_token(request)
    return HttpResponse(
        f'<form method="post"><input type="hidden" name="csrfmiddlewaretoken" value="{token}">'
        '<input name="name"></form>'
    )
