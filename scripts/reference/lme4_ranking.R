# lme4 / lmerTest reference values for the ranking model, committed so the tests need no R.
#
# Model (lme4 notation, REML): y ~ method + (1|subject) + (1|subject:case) + (1|subject:method)
# For every CSV in tests/evaluator/ranking/data/lme4/ (written by
# scripts/reference/lme4_datasets.py) this fits the model with lme4 and writes, to
# tests/evaluator/ranking/data/lme4_expected.json: the REML log-likelihood (tight optimiser
# tolerances, and lme4's default settings for comparison), fixed effects and their SEs
# (treatment coding, first method the reference), variance components, singular-fit flag,
# and lmerTest's Satterthwaite estimate / SE / df / t / p (contest() with one L vector each)
# for every method mean, the grand mean and every pairwise contrast m_i - m_j (i < j).
# tests/evaluator/ranking/test_lme4_reference.py compares the engine's REML fit with them.
#
# Regenerate (from the repository root; R with lme4, lmerTest and jsonlite):
#
#     .venv/bin/python scripts/reference/lme4_datasets.py
#     Rscript scripts/reference/lme4_ranking.R
#
# On Debian/Ubuntu: apt-get install r-base-core r-cran-lme4 r-cran-lmertest r-cran-jsonlite
# (bench-only tools; the platform does not need R).

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
data_dir <- if (length(args) >= 1) args[1] else "tests/evaluator/ranking/data/lme4"
out_file <- if (length(args) >= 2) args[2] else "tests/evaluator/ranking/data/lme4_expected.json"

formula <- y ~ method + (1 | subject) + (1 | subject:case) + (1 | subject:method)
tight <- lmerControl(
  optimizer = "nloptwrap",
  optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12, ftol_rel = 1e-14,
                 maxeval = 1e5)
)

one_contest <- function(fit, L) {
  r <- contest(fit, matrix(L, nrow = 1), joint = FALSE, ddf = "Satterthwaite")
  list(L = L, estimate = r$Estimate, se = r[["Std. Error"]], df = r$df,
       t = r[["t value"]], p = r[["Pr(>|t|)"]])
}

results <- list()
for (path in sort(list.files(data_dir, pattern = "\\.csv$", full.names = TRUE))) {
  name <- sub("\\.csv$", "", basename(path))
  d <- read.csv(path, colClasses = c("character", "character", "character", "numeric"))
  d$method <- factor(d$method, levels = sort(unique(d$method)))
  fit <- lmer(formula, data = d, REML = TRUE, control = tight)
  fit_default <- suppressMessages(lmer(formula, data = d, REML = TRUE))
  vc <- as.data.frame(VarCorr(fit))
  k <- nlevels(d$method)
  means <- list()
  for (j in seq_len(k)) {
    L <- c(1, rep(0, k - 1))
    if (j > 1) L[j] <- 1
    means[[levels(d$method)[j]]] <- one_contest(fit, L)
  }
  grand <- one_contest(fit, c(1, rep(0, k - 1)) + c(0, rep(1 / k, k - 1)))
  pairs <- list()
  for (i in seq_len(k - 1)) {
    for (j in (i + 1):k) {
      li <- c(1, rep(0, k - 1)); if (i > 1) li[i] <- 1
      lj <- c(1, rep(0, k - 1)); if (j > 1) lj[j] <- 1
      pairs[[paste(levels(d$method)[i], levels(d$method)[j], sep = "-")]] <-
        one_contest(fit, li - lj)
    }
  }
  results[[name]] <- list(
    n_obs = nrow(d),
    n_subjects = length(unique(d$subject)),
    methods = levels(d$method),
    reml_loglik = as.numeric(logLik(fit)),
    reml_loglik_default_control = as.numeric(logLik(fit_default)),
    singular = isSingular(fit),
    theta = unname(getME(fit, "theta")),
    sigma = sigma(fit),
    variance_components = setNames(as.list(vc$vcov), vc$grp),
    fixef = unname(fixef(fit)),
    fixef_se = unname(sqrt(diag(as.matrix(vcov(fit))))),
    method_means = means,
    grand_mean = grand,
    pairs = pairs
  )
  cat(sprintf("%-24s logLik %.6f  singular %s\n", name, as.numeric(logLik(fit)), isSingular(fit)))
}
meta <- list(
  R = R.version.string,
  lme4 = as.character(packageVersion("lme4")),
  lmerTest = as.character(packageVersion("lmerTest")),
  formula = deparse(formula),
  control = "nloptwrap, xtol_abs 1e-12, ftol_abs 1e-14, xtol_rel 1e-12, ftol_rel 1e-14"
)
write(toJSON(list(meta = meta, datasets = results), auto_unbox = TRUE, digits = NA, pretty = TRUE),
      out_file)
cat("wrote", out_file, "\n")
