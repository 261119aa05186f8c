// The account page: changes the password through POST /api/password
// (same origin, JSON) and says what happened next to the form.
"use strict";

(function () {
  const form = document.getElementById("password-form");
  if (!form) return;
  const button = document.getElementById("password-button");
  const notice = document.getElementById("password-notice");
  const error = document.getElementById("password-error");
  const oldInput = document.getElementById("old-password");
  const newInput = document.getElementById("new-password");
  const repeatInput = document.getElementById("new-password2");

  function show(element, text) {
    notice.textContent = "";
    error.textContent = "";
    element.textContent = text;
  }

  function mark(input, bad) {
    if (bad) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  function fail(text, input) {
    show(error, text);
    [oldInput, newInput, repeatInput].forEach((i) => mark(i, i === input));
    if (input) input.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!oldInput.value) return fail("Enter your current password.", oldInput);
    if (!newInput.value) return fail("Enter a new password.", newInput);
    if (newInput.value !== repeatInput.value) {
      return fail("The two new passwords don't match.", repeatInput);
    }
    button.disabled = true;
    show(notice, "Changing your password…");
    try {
      const response = await fetch("/api/password", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ old_password: oldInput.value, new_password: newInput.value }),
      });
      let body = {};
      try {
        body = await response.json();
      } catch (_) {
        body = {};
      }
      if (response.ok) {
        form.reset();
        [oldInput, newInput, repeatInput].forEach((i) => mark(i, false));
        show(notice, "Your password was changed. Your other sessions were signed out; this one stays signed in.");
        return;
      }
      if (response.status === 401) {
        window.location.assign("/login?next=/account");
        return;
      }
      const text = body.error || `The password was not changed (HTTP ${response.status}). Try again.`;
      if (response.status === 403) fail(text, oldInput);
      else if (response.status === 400) fail(text, newInput);
      else fail(text, null);
    } catch (_) {
      fail("The server could not be reached. Check your connection and try again.", null);
    } finally {
      button.disabled = false;
    }
  });
})();
