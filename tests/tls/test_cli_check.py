"""`twistgate check` reads the TLS files a listener names, as the gateway would at start."""

from __future__ import annotations

from twistgate.cli import main


def write_config(tmp_path, certificate, key):
    path = tmp_path / "gw.yaml"
    path.write_text(
        "listeners:\n"
        "  - name: edge\n"
        "    endpoint: tcp:8443\n"
        "    tls:\n"
        f"      certificate: {certificate}\n"
        f"      private_key: {key}\n"
    )
    return str(path)


def test_check_accepts_usable_files(pki, tmp_path, capsys):
    assert main(["check", write_config(tmp_path, pki.server.certificate, pki.server.key)]) == 0
    assert ": ok (1 listener" in capsys.readouterr().out


def test_check_reports_a_missing_certificate_with_file_line_and_key(pki, tmp_path, capsys):
    path = write_config(tmp_path, tmp_path / "missing.crt", pki.server.key)
    assert main(["check", path]) == 1
    err = capsys.readouterr().err
    assert f"{path}:4: listeners[0].tls.certificate: cannot read the certificate" in err
