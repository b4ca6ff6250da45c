"""The docs' GatewayHarness example, run for real so it cannot rot."""

import re
from pathlib import Path


def test_plugin_docs_harness_example_runs():
    text = (Path(__file__).parents[1] / "docs/plugins.md").read_text()
    block = text.split("### Inside a whole gateway, in memory", 1)[1]
    code = re.search(r"```python\n(.*?)```", block, re.S).group(1)
    example = Path(__file__).parents[1] / "examples/twistgate-example-plugin/twistgate_example_plugin.py"
    plugin_namespace: dict = {"__name__": "twistgate_example_plugin"}
    exec(compile(example.read_text(), str(example), "exec"), plugin_namespace)
    namespace = {"ExampleHeaders": plugin_namespace["ExampleHeaders"]}
    exec(compile(code, "docs/plugins.md", "exec"), namespace)
    namespace["test_plugin_in_a_gateway"]()
