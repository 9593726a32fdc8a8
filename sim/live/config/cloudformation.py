"""CloudFormation templates as core configs: `Resources:` turned into the API-shaped lists.

`AWS::Events::Connection`, `AWS::Events::ApiDestination` and `AWS::Events::Rule` resources
become `Connections`, `ApiDestinations` and `Rules` (their `Properties`; a missing `Name` is the
logical ID). Other resources are ignored but can be referenced. `Ref`, `Fn::GetAtt` (`Arn`),
`Fn::Sub` and `Fn::Join` are resolved, in long form or as YAML short forms (`TemplateLoader`);
`${env:NAME}` is left for `build_config`. Anything else is an InputError naming the key path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from sim.errors import InputError
from sim.live.config.resources import SECRET_KEYS, SimSettings

EVENT_SECTIONS = {
    "AWS::Events::Connection": "Connections",
    "AWS::Events::ApiDestination": "ApiDestinations",
    "AWS::Events::Rule": "Rules",
}
"""The resource types the core runs, and the API-shaped list each one goes to."""
TEMPLATE_SECTIONS = (
    "AWSTemplateFormatVersion",
    "Description",
    "Metadata",
    "Parameters",
    "Mappings",
    "Conditions",
    "Resources",
    "Outputs",
    "sim",
)
RESOURCE_ATTRIBUTES = (
    "Type",
    "Properties",
    "DependsOn",
    "Condition",
    "DeletionPolicy",
    "UpdateReplacePolicy",
    "UpdatePolicy",
    "CreationPolicy",
    "Metadata",
)
SUPPORTED = "Ref, Fn::GetAtt, Fn::Sub and Fn::Join"
MAX_BUILT = 1_000_000
"""Most characters `Fn::Sub` and `Fn::Join` may build in one template (YAML aliases could
otherwise have them build one large string over and over)."""
_EVENTS_ARN_KINDS = {
    "AWS::Events::Connection": "connection",
    "AWS::Events::ApiDestination": "api-destination",
    "AWS::Events::Rule": "rule",
    "AWS::Events::EventBus": "event-bus",
}
_LOGICAL_ID = re.compile(r"^[A-Za-z0-9]{1,255}$")
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_SECRET_KEYS = (*SECRET_KEYS, "Value")
_SHORT_FORMS = {
    "!Ref": "Ref",
    "!Condition": "Condition",
    **{
        f"!{name}": f"Fn::{name}"
        for name in (
            "And Base64 Cidr Equals FindInMap GetAtt GetAZs If ImportValue Join Length Not Or "
            "Select Split Sub ToJsonString Transform"
        ).split()
    },
}


class TemplateLoader(yaml.SafeLoader):
    """A SafeLoader that reads CloudFormation short forms as their long forms:
    `!Ref X` as `{"Ref": "X"}`, `!GetAtt X.Arn` as `{"Fn::GetAtt": ["X", "Arn"]}`, and so on."""


def _long_form(name: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.MappingNode):
            value = loader.construct_mapping(node, deep=True)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_scalar(node)  # type: ignore[arg-type]
            if name == "Fn::GetAtt":
                value = value.split(".", 1)
        return {name: value}

    return construct


for _tag, _name in _SHORT_FORMS.items():
    TemplateLoader.add_constructor(_tag, _long_form(_name))


def is_template(data: Mapping[str, Any]) -> bool:
    """True for a CloudFormation template (it has `Resources:`)."""
    return "Resources" in data


@dataclass(frozen=True)
class ApiShape:
    """A template as the API-shaped mapping, with the logical ID behind each list item."""

    data: dict[str, Any]
    logical_ids: dict[str, list[str]]

    def template_key(self, key: str | None) -> str | None:
        """An API-shaped key path (`ApiDestinations.0.HttpMethod`) as the template's
        (`Resources.Hook.Properties.HttpMethod`); other keys are returned unchanged."""
        section, _, rest = (key or "").partition(".")
        index, _, inner = rest.partition(".")
        ids = self.logical_ids.get(section, [])
        if not index.isdigit() or int(index) >= len(ids):
            return key
        return ".".join(
            part for part in ("Resources", ids[int(index)], "Properties", inner) if part
        )


def from_template(data: Mapping[str, Any], source: str) -> ApiShape:
    """The API-shaped mapping `CoreConfig` validates, from a template; or one InputError."""
    for key in data:
        if key in EVENT_SECTIONS.values():
            problem = f"the API-shaped {key} list does not go with Resources: (use one form)"
            raise InputError(source, key, problem)
        if key not in TEMPLATE_SECTIONS:
            raise InputError(source, str(key), f"unknown key (use {', '.join(TEMPLATE_SECTIONS)})")
    resources = _checked_resources(data["Resources"], source)
    parameters = data.get("Parameters") or {}
    if not isinstance(parameters, dict):
        raise InputError(source, "Parameters", "must be a mapping of parameter names")
    template = _Template(resources, parameters, data.get("sim"), source)
    shape: dict[str, Any] = {section: [] for section in EVENT_SECTIONS.values()}
    logical_ids: dict[str, list[str]] = {section: [] for section in EVENT_SECTIONS.values()}
    try:
        for logical_id, resource in resources.items():
            section = EVENT_SECTIONS.get(resource["Type"])
            if section is None:
                continue
            if "Condition" in resource:
                key = f"Resources.{logical_id}.Condition"
                raise InputError(source, key, "conditions are not evaluated; remove Condition")
            path = ("Resources", logical_id, "Properties")
            properties = template.resolve(resource.get("Properties") or {}, path)
            if not isinstance(properties, dict):
                raise InputError(source, ".".join(path), "must be a mapping")
            properties.setdefault("Name", logical_id)
            shape[section].append(properties)
            logical_ids[section].append(logical_id)
    except RecursionError:
        raise InputError(source, "Resources", "references nested too deeply") from None
    if not any(logical_ids.values()):
        kinds = ", ".join(EVENT_SECTIONS)
        raise InputError(source, "Resources", f"no {kinds} resources: nothing to run")
    if "sim" in data:
        shape["sim"] = data["sim"]
    return ApiShape(shape, logical_ids)


def _checked_resources(resources: Any, source: str) -> dict[str, dict[str, Any]]:
    if not isinstance(resources, dict) or not resources:
        raise InputError(source, "Resources", "must be a mapping of logical IDs to resources")
    for logical_id, resource in resources.items():
        if not isinstance(logical_id, str) or not _LOGICAL_ID.match(logical_id):
            problem = f"logical ID {logical_id!r} must be letters and digits"
            raise InputError(source, "Resources", problem)
        key = f"Resources.{logical_id}"
        if not isinstance(resource, dict):
            raise InputError(source, key, "must be a mapping with Type and Properties")
        for attribute in resource:
            if attribute not in RESOURCE_ATTRIBUTES:
                raise InputError(source, f"{key}.{attribute}", "unknown key")
        if not isinstance(resource.get("Type"), str):
            raise InputError(
                source, f"{key}.Type", "must be a resource type such as AWS::Events::Rule"
            )
        if not isinstance(resource.get("Properties", {}), dict | None):
            raise InputError(source, f"{key}.Properties", "must be a mapping")
    return resources


class _Template:
    """Resolves intrinsic functions against one template's resources and parameters."""

    def __init__(
        self,
        resources: dict[str, dict[str, Any]],
        parameters: dict[Any, Any],
        settings: Any,
        source: str,
    ) -> None:
        self.resources = resources
        self.parameters = parameters
        self.source = source
        settings = settings if isinstance(settings, dict) else {}
        region = settings.get("region", SimSettings.model_fields["region"].default)
        account = settings.get("account", SimSettings.model_fields["account"].default)
        self.pseudo = {
            "AWS::Region": str(region),
            "AWS::AccountId": str(account),
            "AWS::Partition": _partition(str(region)),
        }
        self._room = MAX_BUILT  # characters Fn::Sub and Fn::Join may still build
        self._names: dict[str, str] = {}
        self._naming: list[str] = []  # logical IDs whose names are being resolved
        self._functions: dict[str, Callable[[Any, tuple[Any, ...]], Any]] = {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": self._join,
        }

    def resolve(self, value: Any, path: tuple[Any, ...]) -> Any:
        """`value` with every intrinsic function replaced by its result."""
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, argument),) = value.items()
                if key == "Ref" or (isinstance(key, str) and key.startswith("Fn::")):
                    function = self._functions.get(key)
                    if function is None:
                        raise self._error(path, f"{key} is not supported (only {SUPPORTED})")
                    return function(argument, path)
            return {key: self.resolve(item, (*path, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item, (*path, i)) for i, item in enumerate(value)]
        return value

    # --- the functions ---

    def _ref(self, argument: Any, path: tuple[Any, ...]) -> Any:
        if not isinstance(argument, str):
            raise self._error(path, "Ref needs a logical ID or pseudo parameter name")
        return self._value_of(argument, path)

    def _get_att(self, argument: Any, path: tuple[Any, ...]) -> str:
        if isinstance(argument, str):
            argument = argument.split(".", 1)
        if not (isinstance(argument, list) and len(argument) == 2):
            raise self._error(path, "Fn::GetAtt needs [LogicalId, Arn] or LogicalId.Arn")
        logical_id, attribute = argument
        return self._arn_of(logical_id, attribute, path)

    def _sub(self, argument: Any, path: tuple[Any, ...]) -> str:
        variables: Any = {}
        if isinstance(argument, list) and len(argument) == 2:
            argument, variables = argument
        if not isinstance(argument, str) or not isinstance(variables, dict):
            raise self._error(path, "Fn::Sub needs a string or [string, {Name: value}]")
        values = {name: self.resolve(value, path) for name, value in variables.items()}
        self._spend(len(argument), path)

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):  # ${!Literal} stands for the text ${Literal}
                return "${" + name[1:] + "}"
            if name.startswith("env:"):  # for build_config's ${env:NAME} secrets
                return match.group(0)
            if name in values:
                value = values[name]
            elif "." in name:
                logical_id, attribute = name.split(".", 1)
                value = self._arn_of(logical_id, attribute, path)
            else:
                value = self._value_of(name, path)
            text = _text(value)
            if text is None:
                problem = f"Fn::Sub: the variable{self._quoted(name, path)} is not a string"
                raise self._error(path, problem)
            self._spend(len(text), path)
            return text

        return _VARIABLE.sub(replace, argument)

    def _join(self, argument: Any, path: tuple[Any, ...]) -> str:
        if not (isinstance(argument, list) and len(argument) == 2 and isinstance(argument[0], str)):
            raise self._error(path, "Fn::Join needs [delimiter, [values]]")
        delimiter, items = argument[0], self.resolve(argument[1], path)
        texts = [_text(item) for item in items] if isinstance(items, list) else [None]
        if any(text is None for text in texts):
            raise self._error(path, "Fn::Join: the values must be a list of strings")
        strings = [text for text in texts if text is not None]
        self._spend(sum(map(len, strings)) + len(delimiter) * len(strings), path)
        return delimiter.join(strings)

    def _spend(self, characters: int, path: tuple[Any, ...]) -> None:
        self._room -= characters
        if self._room < 0:
            problem = f"Fn::Sub and Fn::Join build over {MAX_BUILT:,} characters in all"
            raise self._error(path, problem)

    # --- what names stand for ---

    def _value_of(self, name: str, path: tuple[Any, ...]) -> Any:
        """What `Ref name` gives: a pseudo parameter, a parameter's Default, a resource's name."""
        if name in self.pseudo:
            return self.pseudo[name]
        if name.startswith("AWS::"):
            pseudo = ", ".join(self.pseudo)
            raise self._error(path, f"{name} is not supported (pseudo parameters: {pseudo})")
        if name in self.parameters:
            parameter = self.parameters[name]
            default = parameter.get("Default") if isinstance(parameter, dict) else None
            quoted = self._quoted(name, path)
            if default is None:
                problem = f"parameter{quoted} has no Default (the core takes no parameter values)"
                raise self._error(path, problem)
            if _text(default) is None:
                raise self._error(path, f"parameter{quoted}: Default must be a string")
            return default
        if name in self.resources:
            return self._name_of(name, path)
        raise self._error(path, f"no resource or parameter named{self._quoted(name, path)}")

    def _name_of(self, logical_id: str, path: tuple[Any, ...]) -> str:
        """A resource's name: its `Name` (or `QueueName`, `RoleName`, ...) property, else its ID."""
        if logical_id in self._names:
            return self._names[logical_id]
        if logical_id in self._naming:
            chain = " -> ".join([*self._naming[self._naming.index(logical_id) :], logical_id])
            raise self._error(path, f"the resource names refer to each other: {chain}")
        resource = self.resources[logical_id]
        properties = resource.get("Properties") or {}
        kind = resource["Type"]
        typed_key = kind.rsplit("::", 1)[-1] + "Name"  # QueueName, RoleName, TopicName, ...
        key = typed_key if typed_key in properties and kind not in EVENT_SECTIONS else "Name"
        name_path = ("Resources", logical_id, "Properties", key)
        self._naming.append(logical_id)
        name = self.resolve(properties.get(key, logical_id), name_path)
        self._naming.pop()
        if not isinstance(name, str):
            raise self._error(name_path, "must be a string")
        self._names[logical_id] = name
        return name

    def _arn_of(self, logical_id: Any, attribute: Any, path: tuple[Any, ...]) -> str:
        """What `Fn::GetAtt [logical_id, Arn]` gives: an ARN in the sim region and account."""
        if not isinstance(logical_id, str) or logical_id not in self.resources:
            raise self._error(
                path, f"Fn::GetAtt: no resource named{self._quoted(logical_id, path)}"
            )
        if attribute != "Arn":
            quoted = self._quoted(attribute, path)
            raise self._error(
                path, f"Fn::GetAtt: only the Arn attribute is supported (not{quoted})"
            )
        kind = self.resources[logical_id]["Type"]
        name = self._name_of(logical_id, path)
        partition, region, account = (
            self.pseudo["AWS::Partition"],
            self.pseudo["AWS::Region"],
            self.pseudo["AWS::AccountId"],
        )
        if kind in _EVENTS_ARN_KINDS:
            return f"arn:{partition}:events:{region}:{account}:{_EVENTS_ARN_KINDS[kind]}/{name}"
        parts = kind.split("::")
        service, resource = parts[min(1, len(parts) - 1)].lower(), parts[-1].lower()
        if service in ("sqs", "sns"):
            return f"arn:{partition}:{service}:{region}:{account}:{name}"
        if service == "iam":
            return f"arn:{partition}:iam::{account}:{resource}/{name}"
        return f"arn:{partition}:{service}:{region}:{account}:{resource}/{name}"

    # --- errors ---

    def _error(self, path: tuple[Any, ...], problem: str) -> InputError:
        return InputError(self.source, ".".join(str(part) for part in path), problem)

    @staticmethod
    def _quoted(name: Any, path: tuple[Any, ...]) -> str:
        """` 'name'` for a message, or nothing under a secret key (never echo part of a secret)."""
        return "" if path and str(path[-1]) in _SECRET_KEYS else f" {name!r}"


def _text(value: Any) -> str | None:
    """A scalar as CloudFormation writes it into a string; None for lists and mappings."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"
