"""Table writers and the published numbers they print."""

import csv
import math

import pytest

from experiments import paper_results, report


def test_mean_std_is_the_sample_std():
    assert report.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)  # ddof=1: sqrt(((1)^2 + 0 + 1^2) / 2)
    assert report.mean_std([0.5]) == (0.5, 0.0)
    assert all(math.isnan(v) for v in report.mean_std([]))


def test_table_markdown_and_csv(tmp_path):
    table = report.Table("T", ["rule one", "rule two"], [
        report.Column("model", "model"), report.Column("R@20", "r20", "mean_std"),
        report.Column("paper", "paper", "float")])
    table.add(model="a|b", r20=(0.12345, 0.0011), paper=0.1)
    table.add(model="pop", r20=None)
    table.add(model="det", r20=(0.5, None), paper=None)
    md, path = table.write(tmp_path / "t")
    text = md.read_text()
    assert "rule one  \nrule two" in text  # markdown line breaks between notes
    assert "| a\\|b | 0.1235 ± 0.0011 | 0.1000 |" in text
    assert "| pop | — | — |" in text and "| det | 0.5000 | — |" in text
    rows = list(csv.DictReader(open(path)))
    assert rows[0] == {"model": "a|b", "r20_mean": "0.12345", "r20_std": "0.0011", "paper": "0.1"}
    assert rows[1]["r20_mean"] == "" and rows[1]["paper"] == ""
    assert rows[2]["r20_mean"] == "0.5" and rows[2]["r20_std"] == ""


def test_plots_are_written(tmp_path):
    report.bar_plot(tmp_path / "b.png", ["x", "y"], [0.2, 0.21], [0.01, 0.0], "r", "t", reference=0.2)
    report.line_plot(tmp_path / "l.png", [2, 4, 8], {"s": ([0.1, 0.2, 0.15], [0, 0.01, 0])}, "A", "r", "t",
                     log_x=True)
    report.grouped_bar_plot(tmp_path / "g.png", ["g1", "g2"], {"m": ([0.1, 0.2], [0.0, 0.0])}, "x", "y", "t")
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("b.png", "l.png", "g.png"))


@pytest.mark.parametrize("model, dataset, source, r20", [
    ("gume", "baby", "GUME paper table", 0.1042),
    ("gume", "elec", "GUME paper table", 0.0680),
    ("lgmrec", "sports", "LGMRec logs, BEST block", 0.1067),
    ("lightgcn", "baby", "MMRec evaluation README", 0.0754),
    ("lightgcn", "clothing", "GUME paper table", 0.0526),  # MMRec's README has no Clothing numbers
])
def test_preferred_published_numbers(model, dataset, source, r20):
    entry = paper_results.preferred(model, dataset)
    assert entry.source == source and entry.metrics["recall@20"] == r20


def test_published_tables_are_complete_and_flag_the_copy_error():
    gume_table = [r for r in paper_results.RESULTS if r.source == paper_results.SRC_GUME]
    assert len(gume_table) == 4 * 10 - 1  # LATTICE has no Elec result (out of memory)
    for r in gume_table:  # recall@20 ≥ recall@10 and ndcg@20 ≥ ndcg@10 in every published row
        assert r.metrics["recall@20"] > r.metrics["recall@10"] and r.metrics["ndcg@20"] > r.metrics["ndcg@10"]
    vbpr = {r.dataset: r for r in gume_table if r.model == "vbpr"}
    assert vbpr["clothing"].metrics == vbpr["baby"].metrics and "copy error" in vbpr["clothing"].note
    assert paper_results.preferred("lgmrec", "ml100k") is None
    assert len(paper_results.lookup("lgmrec", "baby")) == 4
