"""template.yaml expanded by aws-sam-translator (what CloudFormation deploys): the serving
function's role can only read, the reindex function writes only under the index prefix, and
the Function URL, events and outputs are there."""
import json
import os

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WRITES = ("s3:Put", "s3:Delete", "s3:*", "*")


@pytest.fixture(scope="module")
def expanded():
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    class NoManagedPolicies:
        def load(self):
            return {}

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with open(os.path.join(ROOT, "template.yaml")) as f:
        template = yaml_parse(f.read())
    # `sam build` replaces the code location with the built artefact; the translator wants one.
    template["Globals"]["Function"]["CodeUri"] = "s3://artifacts/cloudify.zip"
    return transform(template, {}, NoManagedPolicies())["Resources"]


def statements(role):
    for policy in role["Properties"].get("Policies", []):
        yield from policy["PolicyDocument"]["Statement"]


def actions(statement):
    a = statement["Action"]
    return [a] if isinstance(a, str) else a


def test_the_serving_function_can_only_read(expanded):
    role = expanded["ServeFunctionRole"]
    granted = [a for s in statements(role) if s["Effect"] == "Allow" for a in actions(s)]
    assert "s3:GetObject" in granted
    assert not [a for a in granted if a.startswith(WRITES)], granted
    assert role["Properties"]["ManagedPolicyArns"] == [
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]


def test_the_reindex_function_writes_only_under_the_index_prefix(expanded):
    writes = [s for s in statements(expanded["ReindexFunctionRole"])
              if s["Effect"] == "Allow" and any(a.startswith(WRITES) for a in actions(s))]
    assert writes, "the reindex function must write the index"
    for s in writes:
        assert set(actions(s)) <= {"s3:PutObject", "s3:DeleteObject"}, s
        resource = json.dumps(s["Resource"])
        assert "${Bucket}/${IndexPrefix}/*" in resource, resource


def test_function_url_events_and_outputs(expanded):
    url = expanded["ServeFunctionUrl"]["Properties"]
    assert url["AuthType"] == "NONE"
    assert url["InvokeMode"] == {"Ref": "InvokeMode"}
    assert url["Cors"]["AllowMethods"] == ["GET", "HEAD"]
    serve = expanded["ServeFunction"]["Properties"]
    assert serve["Architectures"] == ["arm64"] and serve["Runtime"] == "provided.al2023"
    assert "ReservedConcurrentExecutions" in serve
    rule = expanded["ReindexFunctionSourceChanged"]["Properties"]["EventPattern"]
    assert rule["detail-type"] == ["Object Created", "Object Deleted"]
    assert rule["detail"]["object"]["key"] == [{"prefix": {"Ref": "SourcePrefix"}}]
    assert expanded["ReindexFunctionSchedule"]["Type"] == "AWS::Events::Rule"
    with open(os.path.join(ROOT, "template.yaml")) as f:
        text = f.read()
    for output in ("FunctionUrl:", "StacCatalogUrl:", "CloudFrontUrl:"):
        assert output in text
