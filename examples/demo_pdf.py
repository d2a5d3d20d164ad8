#!/usr/bin/env python3
"""Writes the mediagate demo's report: a small, valid one-page PDF (python3 standard library only).

    python3 examples/demo_pdf.py > report.pdf

The cross-reference table holds each object's byte offset, computed while the file is built,
so PDF viewers (Chromium's included) open it without repairing it. The output is the same
bytes on every run: no dates, no IDs, so a test can compare what a browser received with it.
"""

import sys

TEXT = "mediagate demo report"


def pdf(text):
    # A literal string: backslash and parentheses are the only bytes that need escaping.
    literal = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 24 Tf 72 720 Td ({literal}) Tj ET\n".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream",
    ]
    # The binary comment line tells transfer tools the file is binary (PDF 1.7, 7.5.2).
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    # Each entry exactly 20 bytes: 10-digit offset, 5-digit generation, type, space, LF.
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


if __name__ == "__main__":
    sys.stdout.buffer.write(pdf(TEXT))
