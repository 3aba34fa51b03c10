"""bench.system.write_result: a results file is written whole and never replaces an earlier one."""
from bench.system import write_result


def test_a_second_result_of_the_same_name_is_kept_beside_the_first(tmp_path, capsys):
    first = write_result("ops-2026-12-03.md", "first", tmp_path)
    second = write_result("ops-2026-12-03.md", "second", tmp_path)
    third = write_result("ops-2026-12-03.md", "third", tmp_path)
    assert [p.name for p in (first, second, third)] == ["ops-2026-12-03.md", "ops-2026-12-03-2.md",
                                                        "ops-2026-12-03-3.md"]
    assert [p.read_text() for p in (first, second, third)] == ["first", "second", "third"]
