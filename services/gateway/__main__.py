"""``python -m services.gateway`` serves the hospital HTTP API on GATEWAY_PORT;
``python -m services.gateway openapi`` prints its OpenAPI document."""

import sys

if sys.argv[1:2] == ["openapi"]:
    import orjson

    from medsettle.settings import Settings
    from services.gateway.app import create_app

    document = create_app(Settings(database_url="postgresql://unused")).openapi()
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n")
else:
    from services.gateway.app import run

    run()
