"""Validates Kubernetes objects rendered by helm template against schemas.

    validate.py CRDS KUBERNETES_VERSION FILE...

Built-in kinds are validated by kubernetes-validate against the Kubernetes
API's JSON schemas of KUBERNETES_VERSION, strictly (a field the schema does
not have is an error). Custom resources are validated against the
openAPIV3Schema of their CustomResourceDefinition in CRDS, a
comma-separated list of files (the Prometheus Operator's, for
ServiceMonitor), made as strict: an object
schema with properties accepts no others. A kind with no schema is an
error. Prints one line per object; exits 1 if any is invalid.
"""

import copy
import sys

import jsonschema
import kubernetes_validate
import yaml


def strict(schema):
    """Returns schema with additionalProperties false wherever an object
    lists its properties and does not keep unknown fields."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (node.get("type") == "object" and "properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    return s


def crd_schemas(paths):
    out = {}
    for path in paths.split(","):
        with open(path) as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                for v in spec["versions"]:
                    api = spec["group"] + "/" + v["name"]
                    out[(api, spec["names"]["kind"])] = strict(v["schema"]["openAPIV3Schema"])
    return out


def main():
    crds = crd_schemas(sys.argv[1])
    version = sys.argv[2]
    failed = 0
    seen = 0
    for path in sys.argv[3:]:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for d in docs:
            seen += 1
            what = "%s %s/%s" % (path, d.get("kind"), d.get("metadata", {}).get("name"))
            key = (d.get("apiVersion"), d.get("kind"))
            try:
                if key in crds:
                    jsonschema.Draft7Validator(crds[key]).validate(d)
                    print("valid %s (CustomResourceDefinition schema)" % what)
                else:
                    kubernetes_validate.validate(d, version, strict=True)
                    print("valid %s (Kubernetes %s)" % (what, version))
            except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as e:
                failed += 1
                print("INVALID %s: %s at %s" % (what, e.message, "/".join(str(p) for p in e.absolute_path)))
            except kubernetes_validate.SchemaNotFoundError:
                failed += 1
                print("INVALID %s: no schema for %s %s" % (what, key[0], key[1]))
    if seen == 0:
        print("no object to validate")
        failed += 1
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
