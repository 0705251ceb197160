// The offer form: only the chosen rule's parameters are shown and sent (the others are
// disabled, so a stale value of another rule type never reaches the server).
(function () {
  "use strict";
  const form = document.getElementById("offer-form");
  if (!form) return;
  const choices = Array.from(form.querySelectorAll(".rule-choice"));

  function showChosen() {
    const chosen = form.querySelector('input[name="rule_type"]:checked');
    for (const choice of choices) {
      const active = chosen !== null && choice.dataset.rule === chosen.value;
      const params = choice.querySelector(".rule-params");
      if (!params) continue;
      params.hidden = !active;
      for (const input of params.querySelectorAll("input")) input.disabled = !active;
    }
  }

  form.addEventListener("change", (event) => {
    if (event.target.name === "rule_type") showChosen();
  });
  showChosen();
})();
