"""A module that is NOT on any job allow-list: tests check it never gets imported."""


def boom() -> None:
    raise AssertionError("a job ran a callable from a module that is not allowed")
