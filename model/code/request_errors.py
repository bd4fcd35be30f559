"""Client errors of the inference handler, each carrying the HTTP status it should produce.

Under the SageMaker inference toolkit they subclass its ``BaseInferenceToolkitError``, so the
container answers with ``status_code`` instead of a 500; elsewhere an equivalent base is used.
"""

from __future__ import annotations

try:
    from sagemaker_inference.errors import BaseInferenceToolkitError as _ToolkitError
except ImportError:  # not running under the SageMaker toolkit

    class _ToolkitError(Exception):
        """Same constructor and attributes as the toolkit's ``BaseInferenceToolkitError``."""

        def __init__(self, status_code: int, message: str, phrase: str):
            self.status_code = status_code
            self.message = message
            self.phrase = phrase
            super().__init__(status_code, message, phrase)


class RequestError(_ToolkitError):
    """A request the handler refuses; ``code`` names the kind, ``message`` the problem."""

    status_code = 400
    code = "InvalidInput"

    def __init__(self, message: str):
        # The toolkit sends ``phrase`` as the HTTP reason phrase: keep it on one line.
        super().__init__(self.status_code, message, " ".join(message.split()))

    def __str__(self) -> str:
        return self.message


class InvalidInput(RequestError):
    status_code = 400
    code = "InvalidInput"


class PayloadTooLarge(RequestError):
    status_code = 413
    code = "PayloadTooLarge"


class UnsupportedContentType(RequestError):
    status_code = 415
    code = "UnsupportedContentType"


class NotAcceptable(RequestError):
    status_code = 406
    code = "NotAcceptable"
