"""What can be wrong with a submission, in words an observatory can act on.

Modelled on the Frictionless validation report: every problem has a code, a place (the row number
as the observatory's spreadsheet shows it, and the column), the offending value and a message in
Spanish and English.
"""

import re
from dataclasses import asdict, dataclass

ERROR = "error"
WARNING = "warning"

# code -> (severity, Spanish template, English template). Templates take the Problem's ``params``.
CATALOGUE: dict[str, tuple[str, str, str]] = {
    "unreadable-file": (
        ERROR,
        "No se pudo leer el archivo: {reason}",
        "The file could not be read: {reason}",
    ),
    "unsupported-format": (
        ERROR,
        "Formato de archivo no admitido ({detail}). Envíe CSV (.csv), Excel (.xlsx, .xls) o "
        "SPSS (.sav).",
        "Unsupported file format ({detail}). Send CSV (.csv), Excel (.xlsx, .xls) or SPSS (.sav).",
    ),
    "sent-by-another-observatory": (
        ERROR,
        "Este archivo es idéntico, byte por byte, a uno que ya envió el observatorio {other}; "
        "no se guardó nada. Verifique que envió el archivo correcto.",
        "This file is byte for byte identical to one observatory {other} already sent; nothing "
        "was stored. Check that you sent the right file.",
    ),
    "over-limit": (
        ERROR,
        "El archivo supera el límite de {limit_name}: {limit}{found}. No se leyó nada; divídalo "
        "en archivos más pequeños o revise que exportó la hoja correcta.",
        "The file is over the limit on {limit_name}: {limit}{found}. Nothing was read; split it "
        "into smaller files or check that you exported the right sheet.",
    ),
    "unsafe-file": (
        ERROR,
        "El archivo contiene {reason}, que ningún programa de hojas de cálculo escribe; no se "
        "leyó. Ábralo y guárdelo de nuevo como .xlsx, o envíelo como CSV.",
        "The file holds {reason}, which no spreadsheet program writes; it was not read. Open it "
        "and save it again as .xlsx, or send it as CSV.",
    ),
    "contributor-closed": (
        ERROR,
        "Este contribuyente dejó el intercambio el {closed_on}: sus datos anteriores siguen "
        "contando, pero ya no se reciben archivos suyos. Si debe volver a enviar, hable con el "
        "ministerio.",
        "This contributor left the exchange on {closed_on}: its earlier data still count, but its "
        "files are no longer received. If it must send again, talk to the ministry.",
    ),
    "failed-repeatedly": (
        ERROR,
        "El procesamiento de este archivo se interrumpió {attempts} veces; se apartó para que no "
        "detenga los envíos de nadie. El ministerio lo revisará: no hace falta reenviarlo.",
        "Processing this file broke off {attempts} times; it was set aside so that it holds up "
        "no one's submissions. The ministry will look at it: there is no need to send it again.",
    ),
    "formula-identifier": (
        ERROR,
        "«{value}» en «{title}» empieza como una fórmula de hoja de cálculo ({first}); un código "
        "no puede empezar con =, +, -, @, tabulación ni retorno de carro.",
        "'{value}' in '{title}' starts like a spreadsheet formula ({first}); an id cannot start "
        "with =, +, -, @, tab or carriage return.",
    ),
    "empty-file": (
        ERROR,
        "El archivo no contiene filas de datos.",
        "The file holds no data rows.",
    ),
    "missing-column": (
        ERROR,
        "Falta la columna obligatoria «{title}» ({field}). Encabezados aceptados: {aliases}.",
        "Required column '{title}' ({field}) is missing. Accepted headers: {aliases}.",
    ),
    "unknown-column": (
        WARNING,
        "La columna «{column}» no forma parte del contrato de datos y se descartó "
        "(no se guarda en el almacén nacional).",
        "Column '{column}' is not part of the data contract and was dropped "
        "(it is not stored in the national warehouse).",
    ),
    "more-unknown-columns": (
        WARNING,
        "Otras {count} columnas no forman parte del contrato de datos y se descartaron.",
        "{count} more columns are not part of the data contract and were dropped.",
    ),
    "row-dropped": (
        WARNING,
        "La fila no contiene datos ({reason_es}) y se ignoró.",
        "The row holds no data ({reason_en}) and was ignored.",
    ),
    "encoding-guessed": (
        WARNING,
        "El archivo no está en UTF-8; se leyó como {encoding}. Revise tildes y eñes.",
        "The file is not UTF-8; it was read as {encoding}. Check accented letters.",
    ),
    "extra-cells": (
        ERROR,
        "La fila tiene más celdas que encabezados; revise separadores o comillas.",
        "The row has more cells than there are headers; check delimiters or quotes.",
    ),
    "required": (
        ERROR,
        "El campo «{title}» es obligatorio y está vacío.",
        "Field '{title}' is required and empty.",
    ),
    "type-date": (
        ERROR,
        "«{value}» no es una fecha válida en «{title}» (use AAAA-MM-DD o DD/MM/AAAA).",
        "'{value}' is not a valid date in '{title}' (use YYYY-MM-DD or DD/MM/YYYY).",
    ),
    "type-time": (
        ERROR,
        "«{value}» no es una hora válida en «{title}» (use HH:MM).",
        "'{value}' is not a valid time in '{title}' (use HH:MM).",
    ),
    "type-number": (
        ERROR,
        "«{value}» no es un número en «{title}» (use 1234.56 o 1234,56, sin separador de miles).",
        "'{value}' is not a number in '{title}' (write 1234.56 or 1234,56, no thousands separator).",
    ),
    "type-integer": (
        ERROR,
        "«{value}» no es un número entero en «{title}».",
        "'{value}' is not a whole number in '{title}'.",
    ),
    "codelist": (
        ERROR,
        "«{value}» no es un código válido de «{title}». Códigos aceptados: {allowed}. Si es la "
        "forma en que su sistema escribe uno de ellos, añada en {where}, bajo codes.{field}, la "
        "línea «{value}: <código>».",
        "'{value}' is not a valid code for '{title}'. Accepted codes: {allowed}. If it is how your "
        "system writes one of them, add to {where}, under codes.{field}, the line "
        "'{value}: <code>'.",
    ),
    "age-band": (
        ERROR,
        "«{value}» no es un rango de edades en «{title}»: escriba 18-24 (de 18 a 24 años) o 60+ "
        "(60 o más), entre {low} y {high}. Si es la forma en que su sistema escribe un rango, "
        "añada en {where}, bajo codes.{field}, la línea «{value}: [edad mínima, edad máxima]» "
        "(null como máxima si no tiene tope).",
        "'{value}' is not an age band in '{title}': write 18-24 (18 to 24 years) or 60+ (60 and "
        "over), between {low} and {high}. If it is how your system writes a band, add to "
        "{where}, under codes.{field}, the line '{value}: [lowest age, highest age]' (null as "
        "the highest when it has none).",
    ),
    "pattern": (
        ERROR,
        "«{value}» no tiene el formato esperado para «{title}».",
        "'{value}' does not have the expected format for '{title}'.",
    ),
    "min": (
        ERROR,
        "«{value}» es menor que el mínimo permitido ({limit}) en «{title}».",
        "'{value}' is below the minimum allowed ({limit}) in '{title}'.",
    ),
    "max": (
        ERROR,
        "«{value}» es mayor que el máximo permitido ({limit}) en «{title}».",
        "'{value}' is above the maximum allowed ({limit}) in '{title}'.",
    ),
    "max-length": (
        ERROR,
        "«{value}» es demasiado largo para «{title}» (máximo {limit} caracteres).",
        "'{value}' is too long for '{title}' (at most {limit} characters).",
    ),
    "future-date": (
        ERROR,
        "La fecha {value} en «{title}» está en el futuro.",
        "Date {value} in '{title}' is in the future.",
    ),
    "geography-not-owned": (
        ERROR,
        "La unidad territorial «{value}» (leída como {read}) no es de este contribuyente{hint_es}.",
        "Territorial unit '{value}' (read as {read}) is not this contributor's{hint_en}.",
    ),
    "unknown-place": (
        ERROR,
        "No se encontró el lugar «{value}»{within_es} en la división territorial.",
        "Place '{value}'{within_en} is not in the territorial division.",
    ),
    "ambiguous-place": (
        ERROR,
        "Hay varios lugares llamados «{value}»; indique también {parent_es} para distinguirlos.",
        "Several places are called '{value}'; give the {parent_en} too to tell them apart.",
    ),
    "place-at-other-level": (
        ERROR,
        "«{value}» es {level_es} ({place_code}), no {unit_a_es}: los datos se registran por {unit_es}. "
        "Indique en cada fila su {unit_es}.",
        "'{value}' is a {level_en} ({place_code}), not a {unit_en}: records are kept by {unit_en}. "
        "Send each row's {unit_en}.",
    ),
    "unknown-parent-place": (
        ERROR,
        "No se encontró «{value}» como {parent_es} en la división territorial.",
        "'{value}' is not a {parent_en} of the territorial division.",
    ),
    "bad-date-part": (
        ERROR,
        "«{value}» no es un {part_es} válido para formar la fecha de «{title}».",
        "'{value}' is not a valid {part_en} to make the date of '{title}'.",
    ),
    "profile-column-missing": (
        ERROR,
        "El perfil ({where}) usa la columna «{value}», que el archivo no tiene. Si cambió el "
        "formato de su exportación, avise al ministerio para actualizar el perfil.",
        "The profile ({where}) uses column '{value}', which the file does not have. If your "
        "export changed, ask the ministry to update the profile.",
    ),
    "profile-column-unused": (
        WARNING,
        "El perfil ({where}) describe la columna «{value}», que el archivo no tiene.",
        "The profile ({where}) describes column '{value}', which the file does not have.",
    ),
    "unit-outside-geography": (
        WARNING,
        "La unidad {value} no está en la división territorial vigente en {month}: sus {count} "
        "registros se guardaron pero no cuentan en ningún indicador hasta que el ministerio "
        "corrija la división territorial.",
        "Unit {value} is not in the territorial division valid in {month}: its {count} records "
        "were stored but count in no indicator until the ministry corrects the division.",
    ),
    "unit-without-population": (
        WARNING,
        "La unidad {value} no tiene población para {year} en los datos de referencia: sus "
        "registros cuentan en los totales pero no en las tasas hasta que el ministerio la cargue.",
        "Unit {value} has no population for {year} in the reference data: its records count in "
        "totals but not in rates until the ministry loads it.",
    ),
    "implausible-count": (
        WARNING,
        "{value} en «{title}» es el {share} de la población de la unidad {unit} "
        "({population} habitantes en {year}) en un solo mes ({month}). La fila se aceptó; revise "
        "la cifra: ¿un total anual, un cero de más, otra columna?",
        "{value} in '{title}' is {share} of the population of unit {unit} ({population} "
        "inhabitants in {year}) in a single month ({month}). The row was accepted; check the "
        "figure: a yearly total, an extra zero, another column?",
    ),
    "held-closed-period": (
        WARNING,
        "El período {value} está cerrado: este cambio quedó pendiente de aprobación por el "
        "ministerio y no se aplicó todavía.",
        "Period {value} is closed: this change is pending the ministry's approval and was not "
        "applied yet.",
    ),
    "possible-duplicate": (
        WARNING,
        "Este registro es idéntico, salvo el código, al ya recibido «{value}»: si es el mismo, "
        "elimine uno de los dos (Acción = Eliminar); si son distintos, no haga nada.",
        "This record is identical but for its id to '{value}', already received: if it is the "
        "same, withdraw one of them (Action = Delete); if they differ, do nothing.",
    ),
    "withdraw-unknown": (
        WARNING,
        "Se pidió eliminar un incidente que el almacén nacional no tiene; no se hizo nada.",
        "Asked to delete an incident the national warehouse does not hold; nothing was done.",
    ),
    "before-observatory": (
        ERROR,
        "La fecha {value} es anterior a la creación del observatorio ({opened}).",
        "Date {value} is before the observatory was created ({opened}).",
    ),
    "geography-not-valid-on-date": (
        ERROR,
        "La unidad {value} no existía el {date} (vigente desde {valid_from}); use el código "
        "vigente en esa fecha.",
        "Unit {value} did not exist on {date} (valid from {valid_from}); use the code valid "
        "on that date.",
    ),
    "duplicate-key": (
        ERROR,
        "El código «{value}» ya aparece en una fila anterior de este archivo.",
        "Id '{value}' already appears in an earlier row of this file.",
    ),
}


def register_rule(
    code: str, severity: str, message_es: str, message_en: str, words: dict | None = None
) -> None:
    """Make a contract's cross-field rule a problem code like the built-in ones (``words``: its
    label, ``{es: ..., en: ...}``)."""
    entry = (ERROR if severity == "error" else WARNING, message_es, message_en)
    if CATALOGUE.setdefault(code, entry) != entry:
        raise ValueError(f"problem code {code!r} is defined twice, differently")
    if words:
        LABELS[code] = (str(words["es"]), str(words["en"]))


@dataclass(frozen=True)
class Problem:
    code: str
    row: int | None = None  # source row number as a spreadsheet shows it; None: whole file
    column: str | None = None  # the header as written in the file, or the contract field
    value: str | None = None
    params: tuple[tuple[str, str], ...] = ()

    @property
    def severity(self) -> str:
        return CATALOGUE[self.code][0]

    def message(self, lang: str = "es") -> str:
        """The message in ``lang``; a parameter ``x_es``/``x_en`` fills ``{x}`` in that language."""
        _, es, en = CATALOGUE[self.code]
        params = dict(self.params)
        suffix = f"_{lang}"
        params |= {k.removesuffix(suffix): v for k, v in params.items() if k.endswith(suffix)}
        return (es if lang == "es" else en).format(value=self.value, column=self.column, **params)

    def as_record(self) -> dict:
        record = asdict(self)
        del record["params"]
        record["severity"] = self.severity
        record["message_es"] = self.message("es")
        record["message_en"] = self.message("en")
        return record


MAX_SHOWN_CHARS = 200  # a cell or header echoed in a message: a 1 MB cell must not fill pages


def shorten(text, limit: int = MAX_SHOWN_CHARS):
    """``text`` cut to ``limit`` characters, saying how long it was (None stays None)."""
    if text is None:
        return None
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} caracteres / characters)"


def problem(code: str, row=None, column=None, value=None, **params) -> Problem:
    """A problem with its message parameters given as keywords; long values are shortened."""
    if code not in CATALOGUE:
        raise KeyError(f"unknown problem code {code!r}")
    return Problem(
        code=code,
        row=row,
        column=shorten(column),
        value=shorten(value),
        params=tuple((k, shorten(v, 2000)) for k, v in params.items()),
    )


# code -> (Spanish, English): what a reason is called where a table lists reasons by kind (the
# monthly pack's commonest reasons): words a clerk reads, not the code.
LABELS: dict[str, tuple[str, str]] = {
    "unreadable-file": ("archivo ilegible", "unreadable file"),
    "unsupported-format": ("formato no admitido", "format not accepted"),
    "sent-by-another-observatory": ("enviado antes por otro", "sent before by another"),
    "over-limit": ("archivo demasiado grande", "file too large"),
    "unsafe-file": ("archivo no seguro", "unsafe file"),
    "contributor-closed": ("contribuyente dado de baja", "contributor left the exchange"),
    "failed-repeatedly": ("procesamiento interrumpido", "processing broke off"),
    "formula-identifier": ("fórmula en un código", "formula in an id"),
    "empty-file": ("archivo vacío", "empty file"),
    "missing-column": ("falta una columna", "column missing"),
    "unknown-column": ("columna desconocida", "unknown column"),
    "more-unknown-columns": ("más columnas desconocidas", "more unknown columns"),
    "row-dropped": ("fila descartada", "row dropped"),
    "encoding-guessed": ("codificación deducida", "encoding guessed"),
    "extra-cells": ("celdas de más", "extra cells"),
    "required": ("dato obligatorio vacío", "required value missing"),
    "type-date": ("fecha no válida", "invalid date"),
    "type-time": ("hora no válida", "invalid time"),
    "type-number": ("número no válido", "invalid number"),
    "type-integer": ("número entero no válido", "invalid whole number"),
    "codelist": ("código no válido", "invalid code"),
    "age-band": ("rango de edad no válido", "invalid age band"),
    "pattern": ("formato no válido", "invalid format"),
    "min": ("valor demasiado bajo", "value too low"),
    "max": ("valor demasiado alto", "value too high"),
    "max-length": ("texto demasiado largo", "text too long"),
    "future-date": ("fecha futura", "date in the future"),
    "geography-not-owned": ("lugar de otro contribuyente", "another contributor's place"),
    "unknown-place": ("lugar desconocido", "unknown place"),
    "ambiguous-place": ("lugar ambiguo", "ambiguous place"),
    "place-at-other-level": ("lugar de otro nivel", "place at another level"),
    "unknown-parent-place": ("lugar superior desconocido", "unknown parent place"),
    "bad-date-part": ("parte de fecha no válida", "invalid date part"),
    "profile-column-missing": ("columna del perfil ausente", "profile column missing"),
    "profile-column-unused": ("columna del perfil sin uso", "profile column unused"),
    "unit-outside-geography": ("unidad fuera de la geografía", "unit outside the geography"),
    "unit-without-population": ("unidad sin población", "unit without population"),
    "implausible-count": ("conteo inverosímil", "implausible count"),
    "held-closed-period": ("mes cerrado: en espera", "closed month: held"),
    "possible-duplicate": ("posible duplicado", "possible duplicate"),
    "withdraw-unknown": ("baja de un registro inexistente", "withdrawal of an unknown record"),
    "before-observatory": ("anterior a la apertura", "before the opening"),
    "geography-not-valid-on-date": ("lugar no vigente en la fecha", "place not valid on the date"),
    "duplicate-key": ("código repetido", "repeated id"),
}


def label(code: str, lang: str = "es") -> str:
    """What a reason is called for people: its label, else (a contract's own rule) the start of
    its message."""
    if code in LABELS:
        return LABELS[code][0 if lang == "es" else 1]
    if code in CATALOGUE:
        text = CATALOGUE[code][1 if lang == "es" else 2]
        return re.split(r"[{:.;(]", text, maxsplit=1)[0].strip()[:60] or code
    return code
