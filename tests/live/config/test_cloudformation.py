"""CloudFormation templates as core configs: the same CoreConfig as the API-shaped file,
intrinsic functions, YAML short forms, and one error line naming the template's key path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sim.cli import app
from sim.errors import InputError
from sim.live.config.cloudformation import MAX_BUILT, TemplateLoader
from sim.live.config.loading import CoreConfig, build_config, load_config
from sim.scenario.loading import read_yaml
from tests.support import ROOT
from tests.support.live import ThreadedEndpoint, write_events

SECRET = "cfn-Secret-9931"
ENV = {"CFN_KEY": SECRET}

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Description: Orders to a partner
Parameters:
  PartnerHost: {Type: String, Default: api.partner.example}
  Unused: {Type: String}
Conditions:
  IsMain: !Equals [!Ref "AWS::AccountId", "123456789012"]
Resources:
  Conn:
    Type: AWS::Events::Connection
    Properties:
      AuthorizationType: API_KEY
      AuthParameters:
        ApiKeyAuthParameters: {ApiKeyName: x-api-key, ApiKeyValue: "${env:CFN_KEY}"}
  Dest:
    Type: AWS::Events::ApiDestination
    Properties:
      Name: partner
      ConnectionArn: !GetAtt Conn.Arn
      InvocationEndpoint: !Sub https://${PartnerHost}/orders/*
      HttpMethod: POST
      InvocationRateLimitPerSecond: 20
  Dlq:
    Type: AWS::SQS::Queue
    Properties: {QueueName: orders-dlq}
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Statement: [{Effect: Allow, Principal: {Service: events.amazonaws.com}}]
  Orders:
    Type: AWS::Events::Rule
    DependsOn: Dest
    Properties:
      EventPattern: {source: [shop.orders], detail-type: [OrderPlaced]}
      Targets:
        - Id: partner
          Arn: !GetAtt Dest.Arn
          RoleArn: !GetAtt [Role, Arn]
          HttpParameters: {PathParameterValues: [$.detail.id]}
          DeadLetterConfig: {Arn: !GetAtt Dlq.Arn}
Outputs:
  Destination:
    Value: !GetAtt Dest.Arn
    Export: {Name: !Sub "${AWS::StackName}-destination"}
"""

API_SHAPED: dict[str, Any] = {
    "Connections": [
        {
            "Name": "Conn",
            "AuthorizationType": "API_KEY",
            "AuthParameters": {
                "ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "${env:CFN_KEY}"}
            },
        }
    ],
    "ApiDestinations": [
        {
            "Name": "partner",
            "ConnectionArn": "arn:aws:events:us-east-1:123456789012:connection/Conn",
            "InvocationEndpoint": "https://api.partner.example/orders/*",
            "HttpMethod": "POST",
            "InvocationRateLimitPerSecond": 20,
        }
    ],
    "Rules": [
        {
            "Name": "Orders",
            "EventPattern": {"source": ["shop.orders"], "detail-type": ["OrderPlaced"]},
            "Targets": [
                {
                    "Id": "partner",
                    "Arn": "arn:aws:events:us-east-1:123456789012:api-destination/partner",
                    "RoleArn": "arn:aws:iam::123456789012:role/Role",
                    "HttpParameters": {"PathParameterValues": ["$.detail.id"]},
                    "DeadLetterConfig": {"Arn": "arn:aws:sqs:us-east-1:123456789012:orders-dlq"},
                }
            ],
        }
    ],
}


def _load(tmp_path: Path, text: str, name: str = "stack.yaml") -> CoreConfig:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CFN_KEY", SECRET)
        return load_config(path)


def _error(tmp_path: Path, text: str) -> InputError:
    with pytest.raises(InputError) as caught:
        _load(tmp_path, text)
    return caught.value


def _same(a: CoreConfig, b: CoreConfig) -> bool:
    return a.model_dump() == b.model_dump() and a.secrets == b.secrets


def test_a_template_is_the_same_config_as_the_api_shaped_file(tmp_path: Path) -> None:
    config = _load(tmp_path, TEMPLATE)
    assert _same(config, build_config(API_SHAPED, source="api.yaml", environ=ENV))
    assert config.destination_of(config.Rules[0].Targets[0]).Name == "partner"
    assert config.connection_of(config.ApiDestinations[0]).Name == "Conn"
    assert SECRET in config.secrets and SECRET not in repr(config)


def test_a_json_template_in_long_form_loads_the_same(tmp_path: Path) -> None:
    data = yaml.load(TEMPLATE, Loader=TemplateLoader)
    assert data["Resources"]["Dest"]["Properties"]["ConnectionArn"] == {
        "Fn::GetAtt": ["Conn", "Arn"]
    }
    config = _load(tmp_path, json.dumps(data), name="stack.json")
    assert _same(config, _load(tmp_path, TEMPLATE))


def test_sub_join_and_pseudo_parameters(tmp_path: Path) -> None:
    text = TEMPLATE.replace(
        "      Name: partner\n",
        "      Name: partner\n"
        "      Description: !Sub\n"
        "        - '${!Literal} ${AWS::Region} ${AWS::AccountId} ${AWS::Partition}"
        " ${Conn.Arn} ${V}'\n"
        "        - {V: !Join ['-', [a, !Ref PartnerHost, !Ref Dlq]]}\n",
    ).replace(
        "!Sub https://${PartnerHost}/orders/*",
        "!Join ['', ['https://', !Ref PartnerHost, '/orders/*?k=${env:CFN_KEY}']]",
    )
    text += "sim: {region: cn-north-1, account: '210987654321'}\n"
    destination = _load(tmp_path, text).ApiDestinations[0]
    assert destination.Description == (
        "${Literal} cn-north-1 210987654321 aws-cn "
        "arn:aws-cn:events:cn-north-1:210987654321:connection/Conn a-api.partner.example-orders-dlq"
    )
    assert destination.InvocationEndpoint == f"https://api.partner.example/orders/*?k={SECRET}"


def test_other_resource_types_give_plausible_arns_and_names(tmp_path: Path) -> None:
    text = TEMPLATE.replace("Properties: {QueueName: orders-dlq}", "Properties: {}").replace(
        "RoleArn: !GetAtt [Role, Arn]", "RoleArn: !Sub '${Role.Arn}|${Dlq}'"
    )
    target = _load(tmp_path, text).Rules[0].Targets[0]
    assert target.DeadLetterConfig is not None
    assert target.DeadLetterConfig.Arn == "arn:aws:sqs:us-east-1:123456789012:Dlq"
    assert target.RoleArn == "arn:aws:iam::123456789012:role/Role|Dlq"


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        (
            "ConnectionArn: !GetAtt Conn.Arn",
            "ConnectionArn: !GetAtt Nope.Arn",
            "Resources.Dest.Properties.ConnectionArn",
            "no resource named 'Nope'",
        ),
        (
            "ConnectionArn: !GetAtt Conn.Arn",
            "ConnectionArn: !Ref Nope",
            "Resources.Dest.Properties.ConnectionArn",
            "no resource or parameter named 'Nope'",
        ),
        (
            "!Sub https://${PartnerHost}/orders/*",
            "!Sub https://${Nope}/orders/*",
            "Resources.Dest.Properties.InvocationEndpoint",
            "'Nope'",
        ),
        (
            "ConnectionArn: !GetAtt Conn.Arn",
            "ConnectionArn: !If [IsMain, !GetAtt Conn.Arn, x]",
            "Resources.Dest.Properties.ConnectionArn",
            "Fn::If is not supported",
        ),
        (
            "ConnectionArn: !GetAtt Conn.Arn",
            "ConnectionArn: !ImportValue shared-connection",
            "Resources.Dest.Properties.ConnectionArn",
            "Fn::ImportValue is not supported",
        ),
        (
            "RoleArn: !GetAtt [Role, Arn]",
            "RoleArn: !Select [0, [a, b]]",
            "Resources.Orders.Properties.Targets.0.RoleArn",
            "Fn::Select is not supported",
        ),
        (
            "ConnectionArn: !GetAtt Conn.Arn",
            "ConnectionArn: !GetAtt Conn.SecretArn",
            "Resources.Dest.Properties.ConnectionArn",
            "only the Arn attribute",
        ),
        (
            "!Sub https://${PartnerHost}/orders/*",
            "!Sub https://${Unused}/orders/*",
            "Resources.Dest.Properties.InvocationEndpoint",
            "parameter 'Unused' has no Default",
        ),
        (
            "!Sub https://${PartnerHost}/orders/*",
            "!Sub https://${AWS::StackName}.example/orders/*",
            "Resources.Dest.Properties.InvocationEndpoint",
            "AWS::StackName is not supported",
        ),
        (
            "    DependsOn: Dest\n",
            "    Condition: IsMain\n",
            "Resources.Orders.Condition",
            "conditions are not evaluated",
        ),
        (
            "Outputs:\n",
            "Connections: []\nOutputs:\n",
            "Connections",
            "does not go with Resources",
        ),
        (
            "Outputs:\n",
            "Transform: AWS::Serverless-2016-10-31\nOutputs:\n",
            "Transform",
            "unknown key",
        ),
        (  # an existing check, named by the template's key path
            "HttpMethod: POST",
            "HttpMethod: TRACE",
            "Resources.Dest.Properties.HttpMethod",
            "TRACE is not allowed",
        ),
        (
            'ApiKeyValue: "${env:CFN_KEY}"',
            'ApiKeyValue: "${env:CFN_MISSING}"',
            "Resources.Conn.Properties.AuthParameters.ApiKeyAuthParameters.ApiKeyValue",
            "environment variable CFN_MISSING is not set",
        ),
    ],
)
def test_template_errors_are_one_line_naming_file_and_key_path(
    tmp_path: Path, old: str, new: str, key: str, words: str
) -> None:
    assert old in TEMPLATE
    err = _error(tmp_path, TEMPLATE.replace(old, new, 1))
    assert str(err).startswith(f"{tmp_path / 'stack.yaml'}: {key}: "), str(err)
    assert words in err.problem
    assert "\n" not in str(err) and SECRET not in str(err)


def test_names_that_refer_to_each_other_are_an_error(tmp_path: Path) -> None:
    text = TEMPLATE.replace("      Name: partner\n", "      Name: !Sub '${Orders}-x'\n").replace(
        "    DependsOn: Dest\n    Properties:\n", "    Properties:\n      Name: !Ref Dest\n"
    )
    err = _error(tmp_path, text)
    assert err.key == "Resources.Dest.Properties.Name"
    assert "refer to each other: Orders -> Dest -> Orders" in err.problem


def test_a_template_without_event_resources_is_an_error() -> None:
    data = {"Resources": {"Dlq": {"Type": "AWS::SQS::Queue"}}}
    with pytest.raises(InputError) as caught:
        build_config(data, source="stack.yaml", environ={})
    assert str(caught.value).startswith("stack.yaml: Resources: no AWS::Events::Connection")


def test_errors_under_a_secret_key_never_echo_its_value(tmp_path: Path) -> None:
    hidden = TEMPLATE.replace(
        'ApiKeyValue: "${env:CFN_KEY}"', "ApiKeyValue: !Sub 'hunter2-${NoSuchName}'"
    )
    err = _error(tmp_path, hidden)
    assert err.key == "Resources.Conn.Properties.AuthParameters.ApiKeyAuthParameters.ApiKeyValue"
    assert "hunter2" not in str(err) and "NoSuchName" not in str(err)
    number = TEMPLATE.replace('ApiKeyValue: "${env:CFN_KEY}"', "ApiKeyValue: !Ref Pin").replace(
        "  Unused:", "  Pin: {Type: Number, Default: 86753091}\n  Unused:"
    )
    err = _error(tmp_path, number)
    assert err.key.endswith("ApiKeyAuthParameters.ApiKeyValue") and "86753091" not in str(err)


def test_strings_built_by_sub_and_join_are_capped_in_all(tmp_path: Path) -> None:
    big = "x" * (MAX_BUILT // 2 + 1)
    text = TEMPLATE.replace(
        "!Sub https://${PartnerHost}/orders/*", f"!Sub ['${{A}}${{A}}', {{A: {big}}}]"
    )
    assert "over 1,000,000 characters in all" in _error(tmp_path, text).problem
    aliases = (  # one 100,000-character Sub, used 81 times through YAML aliases
        "Metadata:\n"
        f"  sub: &sub !Sub ['${{A}}', {{A: {'y' * 100_000}}}]\n"
        "  nine: &nine [*sub, *sub, *sub, *sub, *sub, *sub, *sub, *sub, *sub]\n"
        "  all: &all [*nine, *nine, *nine, *nine, *nine, *nine, *nine, *nine, *nine]\n"
    )
    text = aliases + TEMPLATE.replace(
        "      Name: partner\n", "      Name: partner\n      Description: *all\n"
    )
    err = _error(tmp_path, text)
    assert err.key == "Resources.Dest.Properties.Description.1.0"  # the 10th use
    assert "over 1,000,000 characters in all" in err.problem


def test_short_forms_are_for_core_configs_only(tmp_path: Path) -> None:
    path = tmp_path / "doc.yaml"
    path.write_text("a: !Ref X\nb: !GetAtt [Y, Arn]\nc: !Base64 z\n")
    assert read_yaml(path, loader=TemplateLoader) == {
        "a": {"Ref": "X"},
        "b": {"Fn::GetAtt": ["Y", "Arn"]},
        "c": {"Fn::Base64": "z"},
    }
    with pytest.raises(InputError, match="invalid YAML: line 1, column 4"):
        read_yaml(path)  # scenarios keep the plain SafeLoader
    path.write_text("a: !Ref X\nb: !NotCloudFormation y\n")
    with pytest.raises(InputError, match="invalid YAML: line 2, column 4"):
        read_yaml(path, loader=TemplateLoader)


def test_the_shipped_template_example_loads_like_the_plain_one() -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PARTNER_API_KEY", "example-key")
        template = load_config(ROOT / "examples" / "core-cloudformation.yaml")
        plain = load_config(ROOT / "examples" / "core.yaml")
    (rule,) = template.Rules
    (target,) = rule.Targets
    destination = template.destination_of(target).model_dump(exclude={"ConnectionArn"})
    assert destination == plain.ApiDestinations[0].model_dump(exclude={"ConnectionArn"})
    assert template.connection_of(template.destination_of(target)).Name == "partner-auth"
    arns = {"Targets": {"__all__": {"Arn"}}}
    assert rule.model_dump(exclude=arns) == plain.Rules[0].model_dump(exclude=arns)
    assert "example-key" in template.secrets


@pytest.mark.live
def test_core_run_delivers_through_a_template_config(tmp_path: Path) -> None:
    with ThreadedEndpoint() as endpoint:
        config = tmp_path / "stack.yaml"
        config.write_text(
            f"""\
Parameters:
  Endpoint: {{Type: String, Default: "{endpoint.url}"}}
Resources:
  Conn:
    Type: AWS::Events::Connection
    Properties:
      AuthorizationType: BASIC
      AuthParameters: {{BasicAuthParameters: {{Username: u, Password: pw}}}}
  Dest:
    Type: AWS::Events::ApiDestination
    Properties:
      ConnectionArn: !GetAtt Conn.Arn
      InvocationEndpoint: !Ref Endpoint
      HttpMethod: POST
  Dlq:
    Type: AWS::SQS::Queue
  Tests:
    Type: AWS::Events::Rule
    Properties:
      EventPattern: {{source: [test]}}
      Targets:
        - {{Id: t1, Arn: !GetAtt Dest.Arn, DeadLetterConfig: {{Arn: !GetAtt Dlq.Arn}}}}
sim: {{allow_private_endpoints: true, timeout: 0.5}}
"""
        )
        events = write_events(tmp_path / "events.jsonl", 3)
        args = ["core", "run", str(config), "--db", str(tmp_path / "db"), "--events", str(events)]
        result = CliRunner().invoke(app, [*args, "--until-idle"])
    assert result.exit_code == 0, result.output
    assert "3 delivered, 0 dead-lettered, 0 dropped, 0 pending" in result.stderr
    assert sorted(r["n"] for r in endpoint.received) == [0, 1, 2]
