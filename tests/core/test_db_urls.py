"""enrolment.store.db.connect_args: the producer's direct connections read the URL as SQLAlchemy does."""

from __future__ import annotations

import pytest

from enrolment.store.db import DirectConnections, connect_args


def test_a_sqlalchemy_url_becomes_psycopg2_keywords_with_escapes_decoded() -> None:
    url = "postgresql+psycopg2://u%40x:p%2Fw%3A@db.example:5458/participants?sslmode=require&application_name=cli"
    assert connect_args(url) == {
        "user": "u@x",
        "password": "p/w:",
        "host": "db.example",
        "port": "5458",
        "dbname": "participants",
        "sslmode": "require",
        "application_name": "cli",
    }


def test_a_url_without_password_or_port_leaves_them_to_libpq() -> None:
    assert connect_args("postgresql://participants@localhost/participants") == {
        "user": "participants",
        "host": "localhost",
        "dbname": "participants",
    }


def test_another_scheme_is_refused_without_its_password() -> None:
    with pytest.raises(ValueError) as caught:
        connect_args("mysql://u:secret@h/db")
    assert "secret" not in str(caught.value)


def test_the_direct_connections_never_show_the_url() -> None:
    assert "secret" not in repr(DirectConnections("postgresql://u:secret@h/db"))
