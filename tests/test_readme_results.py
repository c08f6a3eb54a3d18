from pathlib import Path

import pytest

from pipeline.config import ConfigError
from pipeline.readme_results import BEGIN, END, markers, update_readme

ROOT = Path(__file__).resolve().parents[1]


def test_block_is_replaced_with_the_report_and_nothing_else_changes(tmp_path):
    readme, report = tmp_path / "README.md", tmp_path / "results.md"
    readme.write_text(f"# Tool\n\nintro\n\n## Results\n\n{BEGIN}\nold numbers\n{END}\n\n## Next\ntext\n")
    report.write_text("# Results\n\n| Model | mean |\n|---|---|\n| Base | 4.000 |\n\n![fig](figure7.png)\n\n## Grid\nline\n")
    update_readme(readme, report, "pipeline profile benchmark && dvc repro")
    text = readme.read_text()
    assert text.startswith("# Tool\n\nintro\n\n## Results\n\n") and text.endswith(f"{END}\n\n## Next\ntext\n")
    assert "old numbers" not in text and "| Base | 4.000 |" in text and "![fig]" not in text
    assert "### Results\n" in text and "#### Grid" in text     # headings two levels down
    assert "`pipeline profile benchmark && dvc repro`" in text
    first = text
    update_readme(readme, report, "pipeline profile benchmark && dvc repro")
    assert readme.read_text() == first                         # idempotent


def test_missing_markers_or_report_are_named(tmp_path):
    readme, report = tmp_path / "README.md", tmp_path / "results.md"
    readme.write_text("# Tool\n")
    report.write_text("# Results\n")
    with pytest.raises(ConfigError, match="README.md: no results markers"):
        update_readme(readme, report, "x")
    with pytest.raises(ConfigError, match="nope.md: no report"):
        update_readme(readme, tmp_path / "nope.md", "x")


def test_the_project_readme_has_one_generated_results_section():
    text = (ROOT / "README.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1 and text.index(BEGIN) < text.index(END)
    block = text[text.index(BEGIN):text.index(END)]
    assert "Produced by the `" in block and "Generated from `reports/results.md` of:" in block


def test_named_sections_are_filled_one_at_a_time(tmp_path):
    readme, report = tmp_path / "README.md", tmp_path / "results.md"
    noisy_begin, noisy_end = markers("noisy")
    readme.write_text(f"{BEGIN}\nmain\n{END}\n\n{noisy_begin}\nold noisy\n{noisy_end}\n")
    report.write_text("# Results\n\n| Base | 5.000 |\n")
    update_readme(readme, report, "pipeline profile noisy && dvc repro", section="noisy")
    text = readme.read_text()
    assert f"{BEGIN}\nmain\n{END}" in text and "old noisy" not in text and "| Base | 5.000 |" in text
    assert text.index(noisy_begin) < text.index("| Base | 5.000 |") < text.index(noisy_end)
    with pytest.raises(ConfigError, match="no results markers .*results:deep:begin"):
        update_readme(readme, report, "x", section="deep")
