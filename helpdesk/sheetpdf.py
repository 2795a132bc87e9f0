"""The welcome sheet's layout (reportlab platypus), and articles' Markdown turned into
paragraphs: the same parser as the web rendering (raw HTML off), its tokens mapped to
reportlab's small markup with every piece of text escaped, so an article can neither
inject markup into the PDF nor break its layout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from helpdesk import kb_text

if TYPE_CHECKING:
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import Flowable

    from helpdesk.welcome import Sheet

MM = 72 / 25.4


@dataclass(frozen=True)
class Styles:
    title: ParagraphStyle
    heading: ParagraphStyle
    sub: ParagraphStyle
    body: ParagraphStyle
    big: ParagraphStyle
    small: ParagraphStyle
    mono: ParagraphStyle

    @classmethod
    def make(cls, regular: str, bold: str) -> Styles:
        from reportlab.lib.styles import ParagraphStyle

        base = ParagraphStyle("body", fontName=regular, fontSize=10, leading=13.5, spaceAfter=4)
        return cls(
            title=ParagraphStyle("title", base, fontName=bold, fontSize=20, leading=24),
            heading=ParagraphStyle(
                "heading", base, fontName=bold, fontSize=13, leading=16, spaceBefore=8
            ),
            sub=ParagraphStyle("sub", base, fontName=bold, fontSize=10.5, spaceBefore=4),
            body=base,
            big=ParagraphStyle("big", base, fontName=bold, fontSize=16, leading=20),
            small=ParagraphStyle("small", base, fontSize=8.5, leading=11),
            mono=ParagraphStyle("mono", base, fontName="Courier", fontSize=9, leading=11),
        )


def _qr(url: str, size: float) -> Flowable:
    from reportlab.graphics.barcode.qr import QrCodeWidget
    from reportlab.graphics.shapes import Drawing

    widget = QrCodeWidget(url, barLevel="M")
    x0, y0, x1, y1 = widget.getBounds()
    drawing = Drawing(size, size, transform=[size / (x1 - x0), 0, 0, size / (y1 - y0), 0, 0])
    drawing.add(widget)
    return drawing


def sheet_flowables(sheet: Sheet, text: dict[str, str], st: Styles) -> list[Flowable]:
    from reportlab.lib import colors
    from reportlab.platypus import Paragraph, Spacer, Table, TableStyle

    def p(value: str, style: ParagraphStyle | None = None) -> Paragraph:
        return Paragraph(escape(value), style or st.body)

    out: list[Flowable] = [
        p(text["welcome"].format(name=sheet.name), st.title),
        p(text["intro"].format(client=sheet.client)),
        Spacer(1, 3 * MM),
    ]
    rows = [
        [p(text["hostname"], st.sub), p(sheet.hostname or "—", st.big)],
        [p(text["serial"], st.sub), p(sheet.serial)],
    ]
    if sheet.model:
        rows.append([p(text["model"], st.sub), p(sheet.model)])
    laptop = Table(rows, colWidths=[45 * MM, 125 * MM])
    laptop.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "MIDDLE")]))
    out += [p(text["laptop"], st.heading), laptop]

    phone = sheet.phone or text["no_phone"]
    help_text: list[Flowable] = [
        p(text["help"], st.heading),
        p(text["call"].format(phone=phone), st.big),
    ]
    if sheet.hours:
        help_text.append(p(sheet.hours))
    help_text += [
        p(text["code"].format(code=sheet.code), st.big),
        p(text["code_hint"].format(client=sheet.client), st.small),
        p(text["qr"], st.small),
    ]
    box = Table([[help_text, _qr(sheet.url, 38 * MM)]], colWidths=[128 * MM, 42 * MM])
    box.setStyle(
        TableStyle(
            [
                ("BOX", (0, 0), (-1, -1), 1, colors.black),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("LEFTPADDING", (0, 0), (-1, -1), 3 * MM),
            ]
        )
    )
    out += [Spacer(1, 3 * MM), box]

    for section in ("sign_in", "vpn", "tools"):
        out.append(p(text[section], st.heading))
        articles = sheet.sections.get(section, [])
        for title, body in articles:
            if len(articles) > 1 or section == "tools":
                out.append(p(title, st.sub))
            out += markdown_flowables(body, st)
        if not articles:
            out += _default(section, sheet, text, st)
    return out


def _default(section: str, sheet: Sheet, text: dict[str, str], st: Styles) -> list[Flowable]:
    if section == "sign_in":
        return markdown_flowables(text["sign_in_default"], st)
    if section == "vpn":
        if sheet.vpn is None:
            return []
        name, kind = sheet.vpn
        return markdown_flowables(text["vpn_default"].format(name=name, kind=kind), st)
    if not sheet.tools:
        return []
    return markdown_flowables(text["tools_default"].format(tools=", ".join(sheet.tools)), st)


# Markdown -> flowables.
def _inline(children: list[Any]) -> str:
    out: list[str] = []
    for tok in children:
        kind = tok.type
        if kind == "text":
            out.append(escape(tok.content))
        elif kind == "code_inline":
            out.append(f'<font face="Courier">{escape(tok.content)}</font>')
        elif kind in ("softbreak",):
            out.append(" ")
        elif kind == "hardbreak":
            out.append("<br/>")
        elif kind == "strong_open":
            out.append("<b>")
        elif kind == "strong_close":
            out.append("</b>")
        elif kind == "em_open":
            out.append("<i>")
        elif kind == "em_close":
            out.append("</i>")
        elif kind == "link_open":
            out.append("<u>")
        elif kind == "link_close":
            out.append("</u>")
        elif tok.content:
            out.append(escape(tok.content))
    return "".join(out)


def markdown_flowables(body: str, st: Styles) -> list[Flowable]:
    """Headings, paragraphs, numbered and bulleted lists, quotes and code blocks; inline
    bold, italics, code and links (underlined: a sheet is paper)."""
    from reportlab.platypus import Paragraph, Preformatted

    tokens = kb_text.markdown().parse(body)
    out: list[Flowable] = []
    lists: list[list[Any]] = []  # [ordered, counter]
    quote = 0
    pending: str | None = None
    for tok in tokens:
        kind = tok.type
        if kind == "heading_open":
            pending = "heading"
        elif kind in ("bullet_list_open", "ordered_list_open"):
            lists.append([kind == "ordered_list_open", int(tok.attrGet("start") or 1)])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif kind == "blockquote_open":
            quote += 1
        elif kind == "blockquote_close":
            quote -= 1
        elif kind in ("fence", "code_block"):
            out.append(Preformatted(tok.content.rstrip("\n"), st.mono))
        elif kind == "inline":
            markup = _inline(tok.children or [])
            indent = 0.0
            style = st.sub if pending == "heading" else st.body
            if lists and pending != "heading":
                ordered, counter = lists[-1]
                bullet = f"{counter}." if ordered else "•"
                lists[-1][1] = counter + 1 if ordered else counter
                indent = 6 * MM * len(lists)
                markup = f"{bullet} {markup}"
            if quote:
                indent += 6 * MM
            if indent:
                from reportlab.lib.styles import ParagraphStyle

                style = ParagraphStyle(f"indent{indent}", style, leftIndent=indent)
            out.append(Paragraph(markup, style))
            pending = None
        elif kind == "hr":
            from reportlab.platypus import Spacer

            out.append(Spacer(1, 3 * MM))
    return out
