// The till: a picked venue applies at once, and a sent form's button goes quiet so a second
// click is not a second request (the server's Idempotency-Key makes it harmless anyway).
"use strict";
(function () {
  const picker = document.querySelector(".venue-picker select");
  if (picker) {
    picker.addEventListener("change", () => picker.form.requestSubmit());
  }
  document.addEventListener("submit", (event) => {
    const button = event.target.querySelector("button[type=submit]");
    if (button) {
      // After this tick: disabling it now would cancel the submission in some browsers.
      setTimeout(() => { button.disabled = true; }, 0);
    }
  });
  // Back to a page from the browser's cache: its buttons work again.
  window.addEventListener("pageshow", () => {
    document.querySelectorAll("button[type=submit]").forEach((button) => { button.disabled = false; });
  });
})();
