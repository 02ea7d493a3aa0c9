"""Symbolic shape expressions such as `(nh + nkvh + nkvh) * dh`, evaluated without eval()."""
import ast
import operator
import re
import unicodedata

from .errors import show

# Far beyond any real shape (llama's longest is 23 characters), and short enough that
# neither Python's parser nor evaluate() below nests near the interpreter's recursion limit.
MAX_LENGTH = 200
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.FloorDiv: operator.floordiv}


class ExprError(ValueError):
    pass


def parse(text: str) -> ast.expr:
    text = str(text).strip()
    if not text:
        raise ExprError("an axis is empty (a comma with nothing before it)")
    if len(text) > MAX_LENGTH:
        raise ExprError(f"the expression '{show(text)}' is {len(text):,} characters long; "
                        f"at most {MAX_LENGTH} are read")
    if found := _NOT_READ.search(text):      # Python would read a comment, or lines joined
        what = f"'{found[0]}'" if found[0] in "#\\" else "a line break"
        raise ExprError(f"'{show(text)}' holds {what}; a shape has dimension names, integers, + - * // "
                        "and parentheses")
    source = _LEADING_ZEROS.sub(_number_start, text)     # 010 is ten, as a repeat count reads it; Python refuses it
    try:
        tree = ast.parse(source, mode="eval").body
    except SyntaxError:
        times = "; write * for ×" if "×" in text else ""    # a seed's x, as typeset
        raise ExprError(f"cannot read the expression '{show(text)}'{times}") from None
    for node in ast.walk(tree):
        ok = isinstance(node, (ast.BinOp, ast.Name, ast.Load, ast.UnaryOp, ast.USub, ast.UAdd) + tuple(_BINARY)) \
            or (isinstance(node, ast.Constant) and type(node.value) is int)
        if not ok:
            raise ExprError(f"'{show(text)}' may use only dimension names, integers, + - * // and parentheses")
        if isinstance(node, ast.Constant) and not _DECIMAL.fullmatch(ast.get_source_segment(source, node)):
            raise ExprError(f"'{show(text)}': integers are decimal digits (Python's 0x10, 0b1 and 1_0 are not read)")
    return tree


_NOT_READ = re.compile(r"[#\\\n\r]")
_LEADING_ZEROS = re.compile(r"0+(?=[0-9])")
_DECIMAL = re.compile(r"[0-9]+", re.ASCII)


def _number_start(zeros: re.Match) -> str:
    """Leading zeros dropped where they start a number; kept within a name (n010, सीमा010: any
    character a Python name may continue with, marks included, comes before them there)."""
    before = zeros.string[zeros.start() - 1] if zeros.start() else " "
    return zeros[0] if ("a" + before).isidentifier() else ""


def identifier(name: str) -> str:
    """A dimension's name as shapes name it: Python reads identifiers in NFKC form, so a
    full-width 'ｎ' in a shape is 'n'; declared and --set names are read the same way."""
    return unicodedata.normalize("NFKC", name)


def names(text: str) -> set[str]:
    return {n.id for n in ast.walk(parse(text)) if isinstance(n, ast.Name)}


def evaluate(text, dims: dict[str, int]) -> int:
    """Value of the expression with every name bound in `dims`; KeyError names an unbound
    one, ExprError a division by zero."""
    if isinstance(text, int):
        return text

    def value(node):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return dims[node.id]
        if isinstance(node, ast.UnaryOp):
            return -value(node.operand) if isinstance(node.op, ast.USub) else value(node.operand)
        return _BINARY[type(node.op)](value(node.left), value(node.right))

    try:
        return value(parse(text))
    except ZeroDivisionError:
        bound = ', '.join(f'{k}={v}' for k, v in sorted(dims.items()) if k in names(text))
        raise ExprError(f"'{text}' divides by zero" + (f" with {bound}" if bound else "")) from None
