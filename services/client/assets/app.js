// The only script: the order countdown and, with Stripe configured, its card element.
// Pages work without it (forms post normally); it adds the live timer and card entry.
(function () {
  "use strict";

  function format(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    var m = Math.floor(s / 60);
    var r = s % 60;
    return m + ":" + (r < 10 ? "0" : "") + r;
  }

  function startCountdown(box) {
    var value = box.querySelector("[data-countdown-value]");
    var expired = box.querySelector("[data-countdown-expired]");
    // The server's own count avoids trusting the visitor's clock for the deadline.
    var deadline = Date.now() + Number(box.getAttribute("data-seconds-left")) * 1000;
    function tick() {
      var left = (deadline - Date.now()) / 1000;
      value.textContent = format(left);
      if (left <= 0) {
        clearInterval(timer);
        expired.hidden = false;
        document.querySelectorAll("[data-pay-form] button:not([data-cancel])").forEach(function (b) {
          b.disabled = true;
        });
      }
    }
    var timer = setInterval(tick, 1000);
    tick();
  }

  function showCardError(message) {
    var box = document.getElementById("card-element");
    var error = document.getElementById("token-error");
    if (!error) {
      error = document.createElement("p");
      error.id = "token-error";
      error.className = "field-error";
      error.setAttribute("role", "alert");
      box.parentNode.appendChild(error);
    }
    error.textContent = message;
    box.parentNode.classList.add("field-invalid");
  }

  function mountStripe(form) {
    var key = form.getAttribute("data-stripe-key");
    var script = document.createElement("script");
    script.src = "https://js.stripe.com/v3/";
    script.onload = function () {
      var stripe = window.Stripe(key);
      var card = stripe.elements().create("card");
      card.mount("#card-element");
      form.addEventListener("submit", function (event) {
        var token = form.querySelector("input[name=token]");
        // Cancelling needs no card.
        if (token.value || (event.submitter && event.submitter.hasAttribute("data-cancel"))) return;
        event.preventDefault();
        stripe.createToken(card).then(function (result) {
          if (result.error) {
            showCardError(result.error.message);
            return;
          }
          token.value = result.token.id;
          form.submit();
        });
      });
    };
    document.head.appendChild(script);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-countdown]").forEach(startCountdown);
    var stripeForm = document.querySelector("[data-pay-form][data-stripe-key]");
    if (stripeForm) mountStripe(stripeForm);
  });
})();
