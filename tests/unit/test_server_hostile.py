"""The model server against careless and hostile callers: every bad body is a 4xx with a message,
counted in the metrics, and the server stays healthy. Also the limits, and the Open Inference
Protocol (V2) against the protocol's documented examples."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from mlcicd.serving import server as serving
from mlcicd.serving.limits import Limits
from tests.helpers import make_model_dir

MAX_ROWS, MAX_BODY = 50, 200_000
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    model, x = make_model_dir(root, rows=600, seed=4)
    app = serving.create_app(root, limits=Limits(max_rows=MAX_ROWS, max_body_bytes=MAX_BODY))
    return TestClient(app, raise_server_exceptions=False), x, model


def good_record(x) -> dict:
    return json.loads(x.head(1).to_json(orient="records"))[0]


def hostile_bodies(x) -> list[tuple[str, bytes, dict]]:
    rec = good_record(x)
    cols = list(rec)
    split = json.loads(x.head(2).to_json(orient="split", index=False))

    def body(obj) -> bytes:
        return json.dumps(obj).encode()

    def with_value(col: str, raw: str) -> bytes:  # a raw JSON literal in one column of one record
        others = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in rec.items() if k != col)
        return f'{{"dataframe_records": [{{{others}, {json.dumps(col)}: {raw}}}]}}'.encode()

    num, cat = "customer_age", "contract"
    cases = [
        ("empty body", b"", JSON),
        ("just a brace", b"{", JSON),
        ("bare word", b"nul", JSON),
        ("trailing comma", b'{"dataframe_records": [{}],}', JSON),
        ("single quotes", b"{'a': 1}", JSON),
        ("control characters", b'{"dataframe_records": "\x00\x01"}', JSON),
        ("invalid utf-8", b'{"dataframe_records": "\xff\xfe\xfa"}', JSON),
        ("utf-16 without bom", "{}".encode("utf-16-le"), JSON),
        ("NaN literal", with_value(num, "NaN"), JSON),
        ("Infinity literal", with_value(num, "Infinity"), JSON),
        ("-Infinity literal", with_value("monthly_charges", "-Infinity"), JSON),
        ("5000-digit integer", with_value(num, "9" * 5000), JSON),
        ("4000-digit integer", with_value(num, "9" * 4000), JSON),
        ("integer beyond int64", with_value(num, str(2**63)), JSON),
        ("float overflow 1e400", with_value("monthly_charges", "1e400"), JSON),
        ("huge integer in a double column", with_value("monthly_charges", "9" * 400), JSON),
        ("fraction in an integer column", with_value(num, "3.5"), JSON),
        ("bool in an integer column", with_value(num, "true"), JSON),
        ("string in an integer column", with_value(num, '"old"'), JSON),
        ("list in a number column", with_value(num, "[1]"), JSON),
        ("object in a number column", with_value(num, '{"a": 1}'), JSON),
        ("number in a string column", with_value(cat, "7"), JSON),
        ("bool in a string column", with_value(cat, "false"), JSON),
        ("list in a string column", with_value(cat, '["a"]'), JSON),
        ("nested 10,000 deep", b"[" * 10_000 + b"]" * 10_000, JSON),
        ("nested 100,000 deep, unclosed", b"[" * 100_000, JSON),
        ("nested objects in a value", with_value(cat, '{"a": ' * 500 + "1" + "}" * 500), JSON),
        ("top-level number", b"42", JSON),
        ("top-level string", b'"rows"', JSON),
        ("top-level null", b"null", JSON),
        ("top-level list", body([rec]), JSON),
        ("empty object", b"{}", JSON),
        ("unknown format", body({"rows": [rec]}), JSON),
        ("two formats", body({"dataframe_records": [rec], "instances": [rec]}), JSON),
        ("split without data", body({"dataframe_split": {"columns": cols}}), JSON),
        ("split columns not a list", body({"dataframe_split": {"columns": "a,b", "data": []}}), JSON),
        ("split data not a list", body({"dataframe_split": {"columns": cols, "data": {"a": 1}}}), JSON),
        (
            "split ragged row",
            body({"dataframe_split": {"columns": split["columns"], "data": [split["data"][0][:-1]]}}),
            JSON,
        ),
        ("split row not a list", body({"dataframe_split": {"columns": split["columns"], "data": [5]}}), JSON),
        (
            "split numeric column names",
            body({"dataframe_split": {"columns": list(range(len(cols))), "data": split["data"]}}),
            JSON,
        ),
        (
            "split duplicate column",
            body({"dataframe_split": {"columns": [cols[0], *cols[:-1]], "data": split["data"]}}),
            JSON,
        ),
        ("split of a string", body({"dataframe_split": "everything"}), JSON),
        (
            "records missing a column",
            body({"dataframe_records": [{k: v for k, v in rec.items() if k != num}]}),
            JSON,
        ),
        ("records ragged", body({"dataframe_records": [rec, {cols[0]: rec[cols[0]]}]}), JSON),
        ("records of numbers", body({"dataframe_records": [1, 2]}), JSON),
        ("no rows", body({"dataframe_records": []}), JSON),
        ("instances mixing records and rows", body({"instances": [rec, list(rec.values())]}), JSON),
        ("instances rows of the wrong width", body({"instances": [[1, 2]]}), JSON),
        (
            "inputs columns of different lengths",
            body({"inputs": {k: [v] * (1 + (k == num)) for k, v in rec.items()}}),
            JSON,
        ),
        ("inputs columns not lists", body({"inputs": dict(rec)}), JSON),
        ("inputs of a number", body({"inputs": 3}), JSON),
        ("too many rows", body({"dataframe_records": [rec] * (MAX_ROWS + 1)}), JSON),
        ("body over the limit", body({"dataframe_records": [rec], "pad": "x" * MAX_BODY}), JSON),
        ("text/plain", body({"dataframe_records": [rec]}), {"content-type": "text/plain"}),
        ("no content type", body({"dataframe_records": [rec]}), {"content-type": ""}),
        ("text/csv", b"a,b\n1,2", {"content-type": "text/csv"}),
        ("form encoded", b"a=1&b=2", {"content-type": "application/x-www-form-urlencoded"}),
        (
            "lying content-length",
            body({"dataframe_records": [rec]}),
            {**JSON, "content-length": str(MAX_BODY * 10)},
        ),
        ("bom then json", b"\xef\xbb\xbf" + body({"dataframe_records": "x"}), JSON),
        ("null row", body({"dataframe_split": {"columns": split["columns"], "data": [None]}}), JSON),
        (
            "null everywhere but numbers as strings",
            body({"dataframe_records": [{k: str(v) for k, v in rec.items()}]}),
            JSON,
        ),
        (
            "columnar of nulls for a bool-free model but strings",
            body({"inputs": {k: ["x"] for k in rec}}),
            JSON,
        ),
        (
            "a null beside an integer beyond int64",
            body({"inputs": {**{k: [v, v] for k, v in rec.items()}, num: [None, 10**400]}}),
            JSON,
        ),
        (
            "one wide record, then thousands of empty ones",
            body({"dataframe_records": [{f"c{i}": 1 for i in range(3000)}] + [{}] * 3000}),
            JSON,
        ),
        ("a lone surrogate as a column name", b'{"dataframe_records": [{"\\ud800": 1}]}', JSON),
        ("instances of numbers", body({"instances": [1, 2]}), JSON),
    ]
    return cases


def test_sixty_hostile_bodies_each_get_a_4xx_with_a_message_and_the_server_stays_healthy(served):
    client, x, model = served
    cases = hostile_bodies(x)
    assert len(cases) >= 60
    before = _count_4xx(client)
    wrong = []
    for name, content, headers in cases:
        r = client.post("/invocations", content=content, headers=headers)
        message = (
            r.json().get("message")
            if r.headers.get("content-type", "").startswith("application/json")
            else None
        )
        if not (400 <= r.status_code < 500 and message):
            wrong.append((name, r.status_code, r.text[:200]))
    assert wrong == []
    assert _count_4xx(client) - before == len(cases)  # every refusal is counted
    assert client.get("/health").json()["status"] == "ok"
    rows = json.loads(x.head(3).to_json(orient="split", index=False))
    ok = client.post("/invocations", json={"dataframe_split": rows})
    assert ok.status_code == 200 and ok.json()["predictions"] == model.predict(x.head(3)).tolist()


def _count_4xx(client) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("mlcicd_requests_total{") and 'status="4' in line:
            total += float(line.split()[-1])
    return total


def test_limits_are_refused_with_413_and_say_which_setting(served):
    client, x, _ = served
    rec = good_record(x)
    r = client.post("/invocations", json={"dataframe_records": [rec] * (MAX_ROWS + 1)})
    assert r.status_code == 413 and "MLCICD_SERVER_MAX_ROWS" in r.json()["message"]
    r = client.post("/invocations", json={"dataframe_records": [rec], "pad": "x" * MAX_BODY})
    assert r.status_code == 413 and "MLCICD_SERVER_MAX_BODY_BYTES" in r.json()["message"]
    assert client.post("/invocations", json={"dataframe_records": [rec] * MAX_ROWS}).status_code == 200


def test_missing_values_are_taken_as_the_pipeline_takes_them(served):
    client, x, model = served
    frame = x.head(4).copy()
    frame.loc[0, "contract"] = None
    frame.loc[1, "monthly_charges"] = None
    frame.loc[2, "customer_age"] = None
    r = client.post(
        "/invocations", json={"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}
    )
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == model.predict(frame).tolist()


# -- the Open Inference Protocol (V2) ----------------------------------------------------------


def test_v2_server_and_model_metadata_health_and_readiness(served):
    client, x, _ = served
    assert client.get("/v2").json()["name"] == "mlcicd"
    assert (
        client.get("/v2/health/live").status_code == 200 and client.get("/v2/health/ready").status_code == 200
    )
    meta = client.get("/v2/models/m").json()
    assert meta["name"] == "m" and meta["versions"] == ["7"]
    inputs = {i["name"]: i for i in meta["inputs"]}
    assert set(inputs) == set(x.columns)
    assert inputs["customer_age"]["datatype"] == "INT64" and inputs["contract"]["datatype"] == "BYTES"
    assert inputs["monthly_charges"]["datatype"] == "FP64" and inputs["contract"]["shape"] == [-1, 1]
    assert client.get("/v2/models/m/ready").json() == {"name": "m", "ready": True}
    assert client.get("/v2/models/m/versions/7/ready").status_code == 200
    missing = client.get("/v2/models/other")
    assert missing.status_code == 404 and "serves m v7" in missing.json()["error"]
    assert client.get("/v2/models/m/versions/8").status_code == 404


def test_v2_infer_one_input_per_column_as_mlservers_pd_content_type(served):
    client, x, model = served
    rows = x.head(3)
    types = {"int64": "INT64", "float64": "FP64", "object": "BYTES"}
    request = {
        "id": "req-42",
        "parameters": {"content_type": "pd"},
        "inputs": [
            {
                "name": c,
                "shape": [3, 1],
                "datatype": types.get(str(rows[c].dtype), "BYTES"),
                "data": rows[c].tolist(),
            }
            for c in rows.columns
        ],
    }
    r = client.post("/v2/models/m/infer", json=request)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "req-42" and body["model_name"] == "m" and body["model_version"] == "7"
    (out,) = body["outputs"]
    assert out["name"] == "predict" and out["shape"] == [3, 1] and out["data"] == model.predict(rows).tolist()
    assert out["datatype"] == "INT64"
    versioned = client.post("/v2/models/m/versions/7/infer", json={**request, "id": None})
    assert versioned.status_code == 200 and "id" not in versioned.json()  # only an id that was sent is echoed


def test_v2_infer_a_single_n_by_k_tensor_in_signature_order(served):
    client, x, model = served
    rows = x.head(2)
    flat = [v for row in rows.itertuples(index=False) for v in row]
    tensor = {
        "inputs": [{"name": "input-0", "shape": [2, len(rows.columns)], "datatype": "BYTES", "data": flat}]
    }
    r = client.post("/v2/models/m/infer", json=tensor)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == model.predict(rows).tolist()
    nested = {
        "inputs": [{**tensor["inputs"][0], "data": [list(row) for row in rows.itertuples(index=False)]}]
    }
    assert (
        client.post("/v2/models/m/infer", json=nested).json()["outputs"][0]["data"]
        == model.predict(rows).tolist()
    )


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ({}, "non-empty 'inputs'"),
        ({"inputs": []}, "non-empty 'inputs'"),
        ({"inputs": [{"shape": [1], "datatype": "FP64", "data": [1]}]}, "'name'"),
        ({"inputs": [{"name": "customer_age", "shape": "1", "datatype": "INT64", "data": [1]}]}, "'shape'"),
        ({"inputs": [{"name": "customer_age", "shape": [-1], "datatype": "INT64", "data": [1]}]}, "'shape'"),
        ({"inputs": [{"name": "customer_age", "shape": [1], "data": [1]}]}, "'datatype'"),
        (
            {"inputs": [{"name": "customer_age", "shape": [2], "datatype": "INT64", "data": [1]}]},
            "needs 2 values",
        ),
        ({"inputs": [{"name": "t", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}, "takes 8"),
        (
            {"inputs": [{"name": "customer_age", "shape": [1, 2, 3], "datatype": "INT64", "data": [1] * 6}]},
            "one column",
        ),
        (
            {"inputs": [{"name": "customer_age", "shape": [1], "datatype": "INT64", "data": [1]}]},
            "missing inputs",
        ),
    ],
)
def test_v2_bad_requests_are_400_with_an_error(served, request_body, message):
    client, _, _ = served
    r = client.post("/v2/models/m/infer", json=request_body)
    assert r.status_code == 400 and message in r.json()["error"], r.text


def test_v2_echoes_any_string_id_and_refuses_what_it_cannot_answer(served):
    client, x, _ = served
    rows = x.head(1)
    inputs = [{"name": c, "shape": [1], "datatype": "BYTES", "data": rows[c].tolist()} for c in rows.columns]
    r = client.post(
        "/v2/models/m/infer",
        content=b'{"id": "\\ud800", "inputs": ' + json.dumps(inputs).encode() + b"}",
        headers=JSON,
    )
    assert r.status_code == 200 and r.json()["id"] == "\ud800"  # escaped, not a 500
    for bad, message in (
        ({"id": 7}, "'id' must be a string"),
        ({"outputs": [{"name": "predict_proba"}]}, "one output, 'predict'"),
        ({"inputs": [{**inputs[0], "datatype": "FLOAT"}, *inputs[1:]]}, "'datatype' must be one of"),
    ):
        r = client.post("/v2/models/m/infer", json={"inputs": inputs, **bad})
        assert r.status_code == 400 and message in r.json()["error"], r.text
    assert (
        client.post(
            "/v2/models/m/infer", json={"inputs": inputs, "outputs": [{"name": "predict"}]}
        ).status_code
        == 200
    )
    unknown = client.get("/v2/nothing/here")
    assert unknown.status_code == 404 and "error" in unknown.json()  # the protocol's body, not FastAPI's
