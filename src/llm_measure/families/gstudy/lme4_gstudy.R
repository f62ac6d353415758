# REML variance components of a G-study with lme4, the independent reference.
# Usage: Rscript lme4_gstudy.R <long.csv> <formula-terms> <out.csv> [profile]
#   long.csv: columns item, score and the facet columns (one fit per item)
#   formula-terms: random-effect grouping columns joined by "+", e.g. "teacher+lesson+rater"
#     (a grouping column is already the combination of the component's columns)
#   profile: also 90% profile-likelihood intervals of the standard deviations
# Writes item, component, sd, lower, upper, seconds (time of the fit [+ profile] alone).
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
data <- read.csv(args[1], colClasses = "character")
data$score <- as.numeric(data$score)
terms <- strsplit(args[2], "+", fixed = TRUE)[[1]]
do_profile <- length(args) >= 4 && args[4] == "profile"
formula <- as.formula(paste("score ~ 1 +", paste0("(1|", terms, ")", collapse = " + ")))
rows <- list()
for (item in unique(data$item)) {
  d <- data[data$item == item, ]
  start <- proc.time()[["elapsed"]]
  fit <- lmer(formula, data = d, REML = TRUE)
  vc <- as.data.frame(VarCorr(fit))
  lower <- upper <- rep(NA_real_, nrow(vc))
  if (do_profile) {
    ci <- confint(fit, parm = "theta_", level = 0.90, method = "profile", oldNames = FALSE)
    # rows of ci are named "sd_(Intercept)|<group>" and "sigma"
    for (k in seq_len(nrow(vc))) {
      key <- if (vc$grp[k] == "Residual") "sigma" else paste0("sd_(Intercept)|", vc$grp[k])
      lower[k] <- ci[key, 1]; upper[k] <- ci[key, 2]
    }
  }
  seconds <- proc.time()[["elapsed"]] - start
  component <- ifelse(vc$grp == "Residual", "residual", vc$grp)
  rows[[item]] <- data.frame(item = item, component = component, sd = vc$sdcor,
                             lower = lower, upper = upper, seconds = seconds)
}
write.csv(do.call(rbind, rows), args[3], row.names = FALSE)
