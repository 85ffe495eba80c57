#!/bin/bash
# As the official Airflow image's entrypoint: `airflow <command>`, except for shells and Python.
case "${1:-}" in
    bash | sh | python | python3 | airflow) exec "$@" ;;
esac
exec airflow "$@"
